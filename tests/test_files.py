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


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from projector.files import remove_stale_temps, write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()   # a pid that has exited
    names = [f".model.safetensors.{dead}-0a1b.tmp",            # a writer that was killed
             ".model.safetensors.ff.tmp",                       # the format before pids: no owner to ask
             f".model.safetensors.{os.getpid()}-cc.tmp",        # a live writer (this process): left alone
             ".other.json.0a.tmp", "model.safetensors"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temps(tmp_path / "model.safetensors")
    assert [p.name for p in removed] == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    (tmp_path / f".log.jsonl.{dead}-99.tmp").write_bytes(b"torn")
    write_text(tmp_path / "log.jsonl", "a\n")  # every atomic write sweeps its own file's dead temps
    assert not (tmp_path / f".log.jsonl.{dead}-99.tmp").exists() and (tmp_path / "log.jsonl").read_text() == "a\n"


def test_model_safetensors_bytes_do_not_depend_on_the_metadata_order():
    """safetensors keeps metadata in a Rust HashMap (order differs per process): export fixes the order."""
    import json

    import numpy as np
    from safetensors.numpy import load, save

    from projector.train.export import canonical_safetensors

    t = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(1, np.float32)}
    data = save(t, metadata={"format": "f", "format_version": "1"})
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    swapped = {"__metadata__": {"format_version": "1", "format": "f"}, **{k: v for k, v in header.items()
                                                                         if k != "__metadata__"}}
    text = json.dumps(swapped, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    other = len(text).to_bytes(8, "little") + text + data[8 + n:]
    assert canonical_safetensors(data) == canonical_safetensors(other)
    back = load(canonical_safetensors(other))
    assert all(np.array_equal(back[k], t[k]) for k in t)
