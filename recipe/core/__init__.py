"""The foundation every package stands on: errors a user can act on, box formats, the process group and
the main-process helper, runtime precision, drawing, and the stage timer benchmarks read. Imports no other package."""
