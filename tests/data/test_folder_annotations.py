"""The ``folder`` format: a user's own clips as ``root/<class>/<video>``, loaded, detected, refused
clearly when a class folder is empty, and read through VideoDataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from effvid.data.annotations import AnnotationError, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.spec import ArchSpec


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def clips(tmp_path) -> Path:
    """Three class folders (one with upper-case extensions), plus things that are not videos."""
    root = tmp_path / "my_clips"
    for name in ("wave/b.mp4", "wave/a.MOV", "jump/x.avi", "jump/notes.txt", "jump/.hidden.mp4",
                 "clap/c.webm", "README.md", "jump/nested/deeper.mp4"):
        touch(root / name)
    (root / ".cache").mkdir()
    return root


def test_class_names_are_the_sorted_folders_and_each_video_a_record(clips):
    result = load_annotations(clips, format="folder")
    assert result.format == "folder" and not result.multilabel and result.source == str(clips)
    assert result.class_names == ("clap", "jump", "wave")
    assert [(r.video_id, r.label) for r in result.records] == [
        ("clap/c.webm", 0), ("jump/x.avi", 1), ("wave/a.MOV", 2), ("wave/b.mp4", 2)]
    assert result.records[0].path == str(clips / "clap" / "c.webm") and result.records[0].num_frames is None


def test_a_folder_of_class_folders_is_detected(clips, tmp_path):
    assert load_annotations(clips).format == "folder"
    assert load_annotations(clips, split=3, subset="test").records == load_annotations(clips).records  # no splits
    # another format's marker file wins: a UCF101 folder also holds class folders of videos
    (clips / "classInd.txt").write_text("1 wave\n")
    (clips / "trainlist01.txt").write_text("wave/b.mp4\n")
    assert load_annotations(clips).format == "ucf101"


def test_an_empty_class_folder_is_an_error_naming_it(clips):
    (clips / "sit").mkdir()
    touch(clips / "sit" / "readme.txt")
    with pytest.raises(AnnotationError) as info:
        load_annotations(clips)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{clips / 'sit'}: ")
    assert "'sit' holds no video files" in message


def test_a_folder_of_split_folders_says_to_give_one(tmp_path):
    root = tmp_path / "data"
    touch(root / "train" / "wave" / "a.mp4")
    touch(root / "val" / "wave" / "b.mp4")
    with pytest.raises(AnnotationError, match="subfolders train, val hold class folders of videos"):
        load_annotations(root)
    assert load_annotations(root / "val").class_names == ("wave",)


def test_classes_fix_the_indices_and_unknown_folders_are_refused(clips):
    result = load_annotations(clips, classes=["wave", "run", "jump", "clap"])
    assert result.class_names == ("wave", "run", "jump", "clap")
    assert [r.label for r in result.records] == [3, 2, 0, 0]  # "run" has no folder: allowed
    (clips / "classes.txt").write_text("jump\nwave\nclap\n")  # a classes.txt in the folder is read too
    assert load_annotations(clips).class_names == ("jump", "wave", "clap")
    with pytest.raises(AnnotationError, match="class folder 'wave' is not one of the 2 class names"):
        load_annotations(clips, classes=["jump", "clap"])


def test_folder_format_needs_a_folder_with_class_folders(tmp_path):
    listing = touch(tmp_path / "list.txt")
    with pytest.raises(AnnotationError, match="is a file; a folder annotation is a folder of class folders"):
        load_annotations(listing, format="folder")
    (tmp_path / "bare").mkdir()
    with pytest.raises(AnnotationError, match="no class folders"):
        load_annotations(tmp_path / "bare", format="folder")


def test_folder_annotation_feeds_video_dataset(tmp_path, make_index_video):
    root = tmp_path / "own"
    for relative in ("run/r1.mp4", "run/r2.mp4", "sit/s1.mp4"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        make_index_video(relative, 20, height=64).rename(root / relative)
    annotation = load_annotations(root)
    spec = ArchSpec("x", num_classes=len(annotation.class_names), num_frames=4, frame_stride=2, crop_size=48,
                    train_resize=(64, 64), test_resize=64)
    data = VideoDataset(annotation, spec=spec, train=False, num_clips=2, num_crops=1)
    assert len(data) == 6 and annotation.class_names == ("run", "sit")
    items = [data.video_item(v) for v in range(3)]
    assert [int(item["label"]) for item in items] == [0, 0, 1]
    assert all(item["valid"] and item["clip"].shape == (2, 3, 4, 48, 48) for item in items)
