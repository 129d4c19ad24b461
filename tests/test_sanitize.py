from recipe.data.sanitize import format_report, sanitize_records


def _rec(image_id, anns, w=100, h=50):
    return {"image_id": image_id, "orig_image_id": str(image_id), "image_path": "x.jpg", "width": w, "height": h,
            "annotations": [{"id": i, "category_id": 1, "bbox": b, "area": 7.0, "iscrowd": c}
                            for i, (b, c) in enumerate(anns)]}


def test_clamp_drop_crowd_and_empty_are_counted():
    records = [
        _rec(1, [([10, 10, 20, 20], 0),       # kept as is
                 ([90, 40, 20, 20], 0),       # clamped to [90, 40, 10, 10]
                 ([150, 10, 5, 5], 0),        # outside -> zero width -> dropped
                 ([5, 5, 0, 10], 0),          # zero width -> dropped
                 ([0, 0, 100, 50], 1)]),      # crowd, kept with its flag
        _rec(2, []),                          # no boxes: stays
    ]
    out, report = sanitize_records(records, {"string_image_ids": 0})
    assert [a["bbox"] for a in out[0]["annotations"]] == [[10.0, 10.0, 20.0, 20.0], [90.0, 40.0, 10.0, 10.0],
                                                          [0.0, 0.0, 100.0, 50.0]]
    assert [a["iscrowd"] for a in out[0]["annotations"]] == [0, 0, 1]
    assert [a["area"] for a in out[0]["annotations"]] == [7.0, 7.0, 7.0]  # the file's area is kept
    assert len(out) == 2 and out[1]["annotations"] == []
    assert report == {"images": 2, "images_without_boxes": 1, "boxes_in": 5, "boxes_clamped": 1,
                      "boxes_dropped_degenerate": 2, "boxes_crowd": 1, "boxes_kept": 3, "string_image_ids": 0,
                      "paths_from_base_name": 0}
    assert records[0]["annotations"][1]["bbox"] == [90, 40, 20, 20]  # input untouched


def test_report_table_shows_nonzero_rows():
    _, report = sanitize_records([_rec(1, [([150, 10, 5, 5], 0)])])
    table = format_report(report, "train")
    assert "boxes dropped: w or h <= 0 after clamping" in table
    assert "boxes clamped" not in table
    assert table.splitlines()[0] == "data report: train"


def test_a_float_box_inside_the_image_is_not_counted_as_clamped():
    # (x + w) - x is not w in floats for these: recomputing the width would count an untouched box as clamped.
    records = [_rec(1, [([222.00000000000003, 16.000000000000004, 38.0, 30.0], 0), ([290.5, 40.25, 20.0, 20.0], 0)],
                    w=300)]
    out, report = sanitize_records(records)
    assert out[0]["annotations"][0]["bbox"] == [222.00000000000003, 16.000000000000004, 38.0, 30.0]
    assert out[0]["annotations"][1]["bbox"] == [290.5, 40.25, 9.5, 9.75]
    assert report["boxes_clamped"] == 1
