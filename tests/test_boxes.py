import numpy as np
import torch

from recipe.core.boxes import clamp_xywh_abs, cxcywh_norm_to_xywh_abs, xywh_abs_to_cxcywh_norm


def test_clamp_inside_is_unchanged():
    assert clamp_xywh_abs([10, 20, 30, 40], 100, 100) == [10.0, 20.0, 30.0, 40.0]


def test_clamp_crossing_borders():
    # x from -5 to 25 -> 0..25; y from 90 to 130 -> 90..100
    assert clamp_xywh_abs([-5, 90, 30, 40], 100, 100) == [0.0, 90.0, 25.0, 10.0]


def test_clamp_fully_outside_gives_zero_size():
    assert clamp_xywh_abs([120, 10, 5, 5], 100, 100)[2] == 0.0


def test_xywh_abs_to_cxcywh_norm_exact():
    out = xywh_abs_to_cxcywh_norm(np.array([[0, 0, 50, 25], [25, 50, 50, 50]]), width=100, height=100)
    np.testing.assert_array_equal(out, np.array([[0.25, 0.125, 0.5, 0.25], [0.5, 0.75, 0.5, 0.5]], np.float32))


def test_xywh_abs_to_cxcywh_norm_clamps_to_unit_square():
    out = xywh_abs_to_cxcywh_norm(np.array([[-10, 90, 20, 20]]), width=100, height=100)
    np.testing.assert_allclose(out, [[0.05, 0.95, 0.1, 0.1]], rtol=0, atol=1e-7)
    assert out.min() >= 0 and out.max() <= 1


def test_xywh_abs_to_cxcywh_norm_empty():
    assert xywh_abs_to_cxcywh_norm(np.zeros((0, 4)), 10, 10).shape == (0, 4)


def test_cxcywh_norm_to_xywh_abs_uses_height_width_order():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4]]])
    out = cxcywh_norm_to_xywh_abs(boxes, torch.tensor([[200, 100]]))  # h=200, w=100
    torch.testing.assert_close(out, torch.tensor([[[40.0, 60.0, 20.0, 80.0]]]))


def test_xywh_and_xyxy_abs_round_trip_exactly():
    import numpy as np

    from recipe.core.boxes import xywh_abs_to_xyxy_abs, xyxy_abs_to_xywh_abs

    xywh = np.array([[10, 20, 30, 40], [0.5, 1.5, 2.0, 3.0]])
    assert xywh_abs_to_xyxy_abs(xywh).tolist() == [[10, 20, 40, 60], [0.5, 1.5, 2.5, 4.5]]
    assert xyxy_abs_to_xywh_abs(xywh_abs_to_xyxy_abs(xywh)).tolist() == xywh.tolist()
    assert xywh_abs_to_xyxy_abs([]).shape == (0, 4)
