"""Every annotation format parsed from small files written here, auto-detected and named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from effvid.data.annotations import FORMATS, UNLABELLED, AnnotationError, load_annotations
from effvid.errors import EffvidError


def write(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def labels(annotation) -> list:
    return [record.label for record in annotation.records]


def test_formats_are_the_agreed_eight():
    assert FORMATS == ("mmaction", "rawframes", "kinetics", "ucf101", "hmdb51", "sthv2", "comma", "folder")


def test_mmaction_list_joins_root_and_names_classes_by_index(tmp_path):
    ann = write(tmp_path / "train.txt", "a/x.mp4 0\nb/y.mp4 2\n/abs/z.mp4 1\n")
    result = load_annotations(ann, root=tmp_path / "videos")
    assert result.format == "mmaction" and not result.multilabel
    assert labels(result) == [0, 2, 1]
    assert result.records[0].path == str(tmp_path / "videos" / "a" / "x.mp4")
    assert result.records[2].path == "/abs/z.mp4"
    assert [r.video_id for r in result.records] == ["a/x.mp4", "b/y.mp4", "/abs/z.mp4"]
    assert result.records[0].num_frames is None
    assert result.class_names == ("0", "1", "2")


def test_root_defaults_to_the_annotation_folder(tmp_path):
    ann = write(tmp_path / "lists" / "val.txt", "clip.mp4 0\n")
    assert load_annotations(ann).records[0].path == str(tmp_path / "lists" / "clip.mp4")


def test_mmaction_multilabel_gives_every_record_a_tuple(tmp_path):
    ann = write(tmp_path / "ml.txt", "a.mp4 1,3\nb.mp4 2\n")
    result = load_annotations(ann)
    assert result.multilabel and result.format == "mmaction"
    assert labels(result) == [(1, 3), (2,)]
    assert result.class_names == ("0", "1", "2", "3")


def test_mmaction2_space_separated_multilabel(tmp_path):
    ann = write(tmp_path / "ml.txt", "videos/a.mp4 1 3\nvideos/b.MKV 2\nmy clip 2.mp4 0 4\nc.webm 3,17\n")
    result = load_annotations(ann)
    assert result.format == "mmaction" and result.multilabel
    assert [(r.video_id, r.label) for r in result.records] == [
        ("videos/a.mp4", (1, 3)), ("videos/b.MKV", (2,)), ("my clip 2.mp4", (0, 4)), ("c.webm", (3, 17))]
    assert len(result.class_names) == 18


def test_ambiguous_first_line_is_refused_with_file_line_and_format_hint(tmp_path):
    ann = write(tmp_path / "list.txt", "\nname 300 0\nother 12 1\n")
    with pytest.raises(AnnotationError) as info:
        load_annotations(ann)
    message = str(info.value)
    assert message.startswith(f"{ann}:2: ambiguous") and "'name 300 0'" in message
    assert "format=" in message and "data.format" in message and len(message.splitlines()) == 1
    frames = load_annotations(ann, format="rawframes")  # named, each reading is what it says
    assert [(r.video_id, r.num_frames, r.label) for r in frames.records] == [("name", 300, 0), ("other", 12, 1)]
    videos = load_annotations(ann, format="mmaction")
    assert videos.multilabel and [r.label for r in videos.records] == [(300, 0), (12, 1)]
    (tmp_path / "name").mkdir()  # a frame folder of that name: raw frames, detected
    assert load_annotations(ann).format == "rawframes"


def test_ambiguous_later_line_of_a_detected_mmaction_list_is_refused(tmp_path):
    ann = write(tmp_path / "list.txt", "a.mp4 1\nepisode 2 5\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:2: ambiguous list line 'episode 2 5'.*format="):
        load_annotations(ann)
    assert [r.label for r in load_annotations(ann, format="mmaction").records] == [(1,), (2, 5)]


def test_mixed_label_separators_are_refused(tmp_path):
    with pytest.raises(AnnotationError, match=r"mixed\.txt:1: .*separated both by spaces and by commas"):
        load_annotations(write(tmp_path / "mixed.txt", "a.mp4 64 3,4\n"))


def test_rawframes_space_separated_multilabel(tmp_path):
    (tmp_path / "frames" / "v1").mkdir(parents=True)
    result = load_annotations(write(tmp_path / "f.txt", "frames/v1 120 2 4\nframes/v2 48 1\n"))
    assert result.format == "rawframes" and result.multilabel
    assert [(r.num_frames, r.label) for r in result.records] == [(120, (2, 4)), (48, (1,))]


def test_classes_txt_next_to_the_list_is_discovered(tmp_path):
    write(tmp_path / "classes.txt", "walk\nrun\n\njump\n")
    result = load_annotations(write(tmp_path / "train.txt", "a.mp4 2\n"))
    assert result.class_names == ("walk", "run", "jump")


def test_explicit_classes_file_or_names_win(tmp_path):
    write(tmp_path / "classes.txt", "walk\nrun\n")
    ann = write(tmp_path / "train.txt", "a.mp4 1\n")
    other = write(tmp_path / "other.txt", "left\nright\n")
    assert load_annotations(ann, classes=other).class_names == ("left", "right")
    assert load_annotations(ann, classes=["up", "down"]).class_names == ("up", "down")


def test_label_beyond_the_class_names_names_file_and_line(tmp_path):
    write(tmp_path / "classes.txt", "walk\nrun\n")
    ann = write(tmp_path / "train.txt", "a.mp4 1\nb.mp4 5\n")
    with pytest.raises(AnnotationError, match=r"train\.txt:2: label 5 is out of range for 2 classes"):
        load_annotations(ann)


def test_rawframes_list_sets_num_frames_and_frame_folder(tmp_path):
    ann = write(tmp_path / "frames.txt", "v1 120 3\nsub/v2 48 0\n")
    root = tmp_path / "data" / "frames"
    (root / "v1").mkdir(parents=True)  # detection needs the first line's frame folder (else it is ambiguous)
    result = load_annotations(ann, root=root)
    assert result.format == "rawframes"
    assert [(r.path, r.num_frames, r.label) for r in result.records] == [
        (str(root / "v1"), 120, 3), (str(root / "sub" / "v2"), 48, 0)]
    named = load_annotations(ann, root="/data/frames", format="rawframes")  # named: no folder needed
    assert [(r.path, r.num_frames, r.label) for r in named.records] == [
        ("/data/frames/v1", 120, 3), ("/data/frames/sub/v2", 48, 0)]


def test_comma_list_with_multilabel_lines(tmp_path):
    ann = write(tmp_path / "anet.txt", "v_a.mp4,300,4\nv_b.mp4,150,1,2\n")
    result = load_annotations(ann)
    assert result.format == "comma" and result.multilabel
    assert [(r.video_id, r.num_frames, r.label) for r in result.records] == [
        ("v_a.mp4", 300, (4,)), ("v_b.mp4", 150, (1, 2))]


def test_comma_list_single_label(tmp_path):
    result = load_annotations(write(tmp_path / "fcvid.csv", "x.mp4,10,0\ny.mp4,20,1\n"))
    assert result.format == "comma" and not result.multilabel and labels(result) == [0, 1]


def test_windows_endings_bom_blank_lines_and_trailing_space(tmp_path):
    ann = write(tmp_path / "win.txt", "\r\na.mp4 0  \r\n\r\n\tb.mp4 1\t\r\n\r\n", encoding="utf-8-sig")
    result = load_annotations(ann)
    assert [(r.video_id, r.label) for r in result.records] == [("a.mp4", 0), ("b.mp4", 1)]


def test_bad_list_line_names_file_line_and_text(tmp_path):
    ann = write(tmp_path / "train.txt", "a.mp4 0\n\nb.mp4 cat\n")
    with pytest.raises(AnnotationError) as info:
        load_annotations(ann)
    message = str(info.value)
    assert f"{ann}:3:" in message and "'b.mp4 cat'" in message
    assert isinstance(info.value, EffvidError)


def test_undetectable_first_line_is_an_error_naming_the_line(tmp_path):
    ann = write(tmp_path / "odd.txt", "\njust-a-path.mp4\n")
    with pytest.raises(AnnotationError, match=r"odd\.txt:2: cannot tell the annotation format.*just-a-path"):
        load_annotations(ann)


def test_missing_file_unknown_format_and_non_utf8(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        load_annotations(tmp_path / "nope.txt")
    ann = write(tmp_path / "a.txt", "a.mp4 0\n")
    with pytest.raises(AnnotationError, match="unknown annotation format 'csv'"):
        load_annotations(ann, format="csv")
    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"a.mp4 0\n\xe9t\xe9.mp4 1\n")
    with pytest.raises(AnnotationError, match=r"latin\.txt:2: not UTF-8"):
        load_annotations(bad)


def test_named_format_parses_against_its_own_layout(tmp_path):
    ann = write(tmp_path / "list.txt", "a.mp4 0\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:1: expected `frame_dir total_frames label"):
        load_annotations(ann, format="rawframes")


KINETICS_CSV = (
    "label,youtube_id,time_start,time_end,split\n"
    "riding a bike,abc123,10,20,train\n"
    '"air drumming",xyz_-9,0,10,train\n'
    "abseiling,q1,7,17,train\n"
)


def test_kinetics_csv_paths_and_sorted_class_names(tmp_path):
    ann = write(tmp_path / "train.csv", KINETICS_CSV)
    result = load_annotations(ann, root="/k400")
    assert result.format == "kinetics"
    assert result.class_names == ("abseiling", "air drumming", "riding a bike")
    assert labels(result) == [2, 1, 0]
    assert result.records[0].path == "/k400/train/riding a bike/abc123_000010_000020.mp4"
    assert result.records[1].video_id == "xyz_-9_000000_000010"


def test_kinetics_path_template_and_classes_file(tmp_path):
    ann = write(tmp_path / "val.csv", KINETICS_CSV)
    names = write(tmp_path / "names.txt", "riding a bike\nair drumming\nabseiling\nzumba\n")
    result = load_annotations(ann, root="/k", classes=names, path_template="{label}/{youtube_id}.mp4")
    assert result.class_names == ("riding a bike", "air drumming", "abseiling", "zumba")
    assert labels(result) == [0, 1, 2]
    assert result.records[2].path == "/k/abseiling/q1.mp4"


def test_kinetics_label_missing_from_classes_file_names_line(tmp_path):
    ann = write(tmp_path / "val.csv", KINETICS_CSV)
    write(tmp_path / "classes.txt", "abseiling\nair drumming\n")
    with pytest.raises(AnnotationError, match=r"val\.csv:2: unknown class 'riding a bike'"):
        load_annotations(ann)


def test_kinetics_test_csv_without_labels_is_unlabelled(tmp_path):
    ann = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nabc,1,11,test\n")
    result = load_annotations(ann, root="/k")
    assert result.format == "kinetics"
    assert labels(result) == [UNLABELLED] and result.class_names == ()
    assert result.records[0].path == "/k/test/abc_000001_000011.mp4"
    with pytest.raises(AnnotationError, match=r"test\.csv:2: path_template .*no label column"):
        load_annotations(ann, path_template="{split}/{label}/{youtube_id}.mp4")


def test_kinetics_bad_row_names_line(tmp_path):
    ann = write(tmp_path / "train.csv", "label,youtube_id,time_start,time_end,split\nrun,a,1,x,train\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:2: time 'x' is not a whole number"):
        load_annotations(ann)
    ann = write(tmp_path / "short.csv", "label,youtube_id,time_start,time_end,split\nrun,a,1\n")
    with pytest.raises(AnnotationError, match=r"short\.csv:2: expected 5 CSV fields, got 3"):
        load_annotations(ann)


@pytest.fixture
def ucf_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ucfTrainTestlist"
    write(folder / "classInd.txt", "1 ApplyEyeMakeup\r\n2 Archery\r\n3 Biking\r\n")
    write(folder / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nBiking/v_Biking_g09_c02.avi 3\n")
    write(folder / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\nBiking/v_Biking_g01_c01.avi\n")
    write(folder / "trainlist02.txt", "Archery/v_Archery_g02_c01.avi 2\n")
    return folder


def test_ucf101_folder_picks_split_and_subset(ucf_folder):
    train = load_annotations(ucf_folder, root="/ucf")
    assert train.format == "ucf101" and train.class_names == ("ApplyEyeMakeup", "Archery", "Biking")
    assert [(r.video_id, r.label) for r in train.records] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0), ("Biking/v_Biking_g09_c02.avi", 2)]
    assert train.records[0].path == "/ucf/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    test = load_annotations(ucf_folder, subset="test")
    assert labels(test) == [1, 2]  # from the folder names
    assert [r.video_id for r in load_annotations(ucf_folder, split=2).records] == ["Archery/v_Archery_g02_c01.avi"]
    with pytest.raises(AnnotationError, match=r"testlist03\.txt: UCF101 split file"):
        load_annotations(ucf_folder, split=3, subset="test")


def test_ucf101_split_file_is_detected(ucf_folder):
    result = load_annotations(ucf_folder / "testlist01.txt")
    assert result.format == "ucf101" and labels(result) == [1, 2]


def test_ucf101_errors_name_file_and_line(ucf_folder):
    write(ucf_folder / "testlist01.txt", "Archery/v_a.avi\nSurfing/v_b.avi\n")
    with pytest.raises(AnnotationError, match=r"testlist01\.txt:2: unknown class 'Surfing'"):
        load_annotations(ucf_folder, subset="test")
    write(ucf_folder / "trainlist01.txt", "Archery/v_a.avi 9\n")
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:1: label 9 is not in classInd"):
        load_annotations(ucf_folder)


@pytest.fixture
def hmdb_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "testTrainMulti_7030_splits"
    write(folder / "brush_hair_test_split1.txt", "b1.avi 1 \nb2.avi 2 \nb3.avi 0 \n")
    write(folder / "cartwheel_test_split1.txt", "c1.avi 2 \nc2.avi 1 \n")
    write(folder / "cartwheel_test_split2.txt", "c1.avi 1 \nc2.avi 1 \n")
    write(folder / "brush_hair_test_split2.txt", "b1.avi 2 \n")
    return folder


def test_hmdb51_flags_select_train_and_test(hmdb_folder):
    train = load_annotations(hmdb_folder, root="/hmdb")
    assert train.format == "hmdb51" and train.class_names == ("brush_hair", "cartwheel")
    assert [(r.video_id, r.label) for r in train.records] == [("brush_hair/b1.avi", 0), ("cartwheel/c2.avi", 1)]
    assert train.records[0].path == "/hmdb/brush_hair/b1.avi"
    test = load_annotations(hmdb_folder, subset="test")
    assert [(r.video_id, r.label) for r in test.records] == [("brush_hair/b2.avi", 0), ("cartwheel/c1.avi", 1)]
    split2 = load_annotations(hmdb_folder / "cartwheel_test_split2.txt", split=2)
    assert [r.video_id for r in split2.records] == ["cartwheel/c1.avi", "cartwheel/c2.avi"]


def test_hmdb51_bad_flag_names_file_and_line(hmdb_folder):
    write(hmdb_folder / "cartwheel_test_split1.txt", "c1.avi 2\nc2.avi 3\n")
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split1\.txt:2: expected `video\.avi 0\|1\|2`"):
        load_annotations(hmdb_folder)


@pytest.fixture
def sthv2_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ssv2"
    labels_json = {"Pushing something from left to right": "1", "Putting something on a surface": "0",
                   "Moving something and something closer to each other": "2"}
    write(folder / "labels.json", json.dumps(labels_json))
    train = [
        {"id": "78687", "label": "pushing a pen from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
        {"id": "42326", "label": "moving cup and box closer to each other",
         "template": "Moving [something] and [something] closer to each other", "placeholders": ["cup", "box"]},
    ]
    write(folder / "train.json", json.dumps(train, indent=1))
    write(folder / "validation.json", json.dumps([
        {"id": "1", "label": "putting a book on a table", "template": "Putting [something] on a surface",
         "placeholders": ["a book"]}]))
    return folder


def test_sthv2_template_without_brackets_is_the_class(sthv2_folder):
    result = load_annotations(sthv2_folder / "train.json", root="/ssv2/videos")
    assert result.format == "sthv2"
    assert result.class_names == ("Putting something on a surface", "Pushing something from left to right",
                                  "Moving something and something closer to each other")
    assert [(r.video_id, r.label) for r in result.records] == [("78687", 1), ("42326", 2)]
    assert result.records[0].path == "/ssv2/videos/78687.webm"


def test_sthv2_folder_test_subset_is_validation(sthv2_folder):
    result = load_annotations(sthv2_folder, subset="test", path_template="{id}.mp4")
    assert result.format == "sthv2" and labels(result) == [0]
    assert result.records[0].path == str(sthv2_folder / "1.mp4")


def test_sthv2_unknown_template_names_item(sthv2_folder):
    write(sthv2_folder / "train.json", json.dumps([{"id": "5", "template": "Spinning [something]"}]))
    with pytest.raises(AnnotationError, match=r"train\.json: item 0 \(id 5\): unknown class 'Spinning something'"):
        load_annotations(sthv2_folder / "train.json")
    write(sthv2_folder / "train.json", '[\n{"id": "5",\n "template": }\n]')
    with pytest.raises(AnnotationError, match=r"train\.json:3: invalid JSON"):
        load_annotations(sthv2_folder)


def test_sthv2_test_json_without_templates_is_unlabelled(sthv2_folder):
    write(sthv2_folder / "test.json", json.dumps([{"id": "9"}, {"id": "10"}]))
    result = load_annotations(sthv2_folder / "test.json")
    assert labels(result) == [UNLABELLED, UNLABELLED] and len(result.class_names) == 3


@pytest.mark.parametrize("name, text, expected", [
    ("a.txt", "x.mp4 3\n", "mmaction"),
    ("b.txt", "x.mp4 3,4\n", "mmaction"),
    ("c.txt", "frames/x 64 3\n", "rawframes"),
    ("d.txt", "x.mp4,64,3\n", "comma"),
    ("e.csv", "label,youtube_id,time_start,time_end,split\nrun,a,0,10,val\n", "kinetics"),
    ("f.csv", "\ufeffyoutube_id,time_start,time_end,split\na,0,10,test\n", "kinetics"),
])
def test_auto_detection_of_list_files(tmp_path, name, text, expected):
    (tmp_path / "frames" / "x").mkdir(parents=True)  # the rawframes line's folder exists
    assert load_annotations(write(tmp_path / name, text)).format == expected


def test_auto_detection_of_folders(ucf_folder, hmdb_folder, sthv2_folder, tmp_path):
    assert load_annotations(ucf_folder).format == "ucf101"
    assert load_annotations(ucf_folder / "classInd.txt").format == "ucf101"
    assert load_annotations(hmdb_folder).format == "hmdb51"
    assert load_annotations(sthv2_folder).format == "sthv2"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AnnotationError, match="cannot tell the annotation format of this folder"):
        load_annotations(empty)


def test_empty_annotation_is_an_error(tmp_path):
    with pytest.raises(AnnotationError, match="empty"):
        load_annotations(write(tmp_path / "blank.txt", "\n \r\n"))


def test_records_are_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "l.txt", "x.mp4 0\n")
    result = load_annotations("l.txt", root="vids")
    assert os.path.isabs(result.records[0].path) and result.records[0].path == str(tmp_path / "vids" / "x.mp4")
