"""The command line: the one table of commands, `--help` built without heavy imports, the entry points
(`detr-train`, `detr-evaluate`, ...) and the generated options reference (docs/config.md)."""
