import pytest

from projector.files import read_json, write_json, write_text


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_file(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"round": 1})
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")}, allow_nan=False)  # fails while serialising
    assert read_json(path) == {"round": 1}
    write_text(tmp_path / "a.txt", "é\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "state.json"]
    (tmp_path / "bad.json").write_text("{torn")
    assert read_json(tmp_path / "bad.json") is None and read_json(tmp_path / "missing.json") is None
