"""Annotation files: the list of videos of a dataset, with their labels and class names.

:func:`load_annotations` reads the formats datasets ship in, auto-detected from the file or
named with ``format=``:

``mmaction``
    ``path label`` per line; for multi-label data mmaction2's own ``path l1 l2 ...`` (labels
    separated by spaces) or ``path l1,l2,...``. The labels are the numbers that end the line; a
    path that ends in a video-file extension (:data:`VIDEO_EXTENSIONS`) may hold spaces and
    digits (``my clip 2.mp4 3``). With the format detected, a line like ``name 2 5`` whose path
    has no video extension is refused as ambiguous (``name 2`` with label 5?); ``format="mmaction"``
    reads it as mmaction2 does: ``name`` with labels 2 and 5.
``rawframes``
    ``dir total_frames label`` per line (a frame folder; ``num_frames`` is set); multi-label
    ``dir total_frames l1 l2 ...`` (mmaction2) or ``dir total_frames l1,l2,...``.
``kinetics``
    the official CSV ``label,youtube_id,time_start,time_end,split``; each video lives at
    ``path_template`` (default ``{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4``).
    A CSV without a ``label`` column (the test split) loads as unlabelled records.
``ucf101``
    ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based) with ``trainlist0N.txt`` /
    ``testlist0N.txt`` (``Class/v_x.avi [label]``; a missing label comes from the folder name).
``hmdb51``
    a folder of ``<class>_test_splitN.txt`` files, lines ``video.avi 1|2|0`` (train, test,
    unused); videos at ``<class>/<video>``.
``sthv2``
    Something-Something v2 ``train.json`` / ``validation.json`` (a list of ``{id, label,
    template, placeholders}``) with ``labels.json`` (``{name: "index"}``); an item's class is its
    ``template`` with the ``[`` ``]`` brackets removed; videos at ``{id}.webm``.
``comma``
    ActivityNet / FCVID lists ``path,num_frames,label1[,label2,...]``.
``folder``
    a user's own clips as a folder of class folders, ``root/<class>/<video>``: the class names
    are the sorted names of the subfolders (or ``classes``, or a ``classes.txt`` in the folder,
    which fix the indices so that train and val folders agree), one record per file with a
    video extension (:data:`VIDEO_EXTENSIONS`, any case) directly inside a class folder, in
    sorted order; ``video_id`` is ``<class>/<file>``. Names starting with ``.`` are ignored,
    and so are files beside the class folders. There are no splits: ``split`` and ``subset``
    do not apply (give the train and val folders separately). A class folder without videos
    is an :class:`AnnotationError` naming it; so is, with ``classes`` given, a folder that is
    not one of them (a class without a folder is allowed: a val set may lack one). ``root``
    does not apply: the videos are where the folder holds them.

Rules shared by every format:

* Relative video paths are joined to ``root``, which defaults to the folder holding the
  annotation file; every :attr:`VideoRecord.path` is absolute.
* Class names: Kinetics, UCF101, HMDB51 and SSv2 carry names (Kinetics: the sorted unique
  labels). List formats (mmaction, rawframes, comma) read ``classes`` (a file with one name per
  line, or a sequence of names), else a ``classes.txt`` next to the annotation file, else the
  names are the label indices as strings. An explicit ``classes``, and for Kinetics a
  ``classes.txt`` next to the CSV, fix the index of every name (so train and val splits agree).
* Multi-label: when any entry has several labels, :attr:`Annotation.multilabel` is true and
  every record's label is a tuple of indices; otherwise labels are plain ints.
* Unlabelled records (Kinetics test CSV, SSv2 test JSON) have the label :data:`UNLABELLED`.
* Blank lines, trailing whitespace, Windows line endings and a UTF-8 BOM are accepted. Anything
  else that does not parse is an :class:`AnnotationError` naming ``file:line`` and the text.

Auto-detection reads the first line of a list: ``path,frames,labels`` is ``comma``; a path with a
video extension followed by numbers is ``mmaction`` (several numbers: several labels); a path and
one number (or ``l1,l2``) is ``mmaction``; a path without a video extension followed by two or
more numbers is ``rawframes`` when the path is a folder under ``root``, and otherwise ambiguous
(``name 300 0``: the frame folder ``name`` of 300 frames with label 0, or the video ``name`` with
labels 300 and 0?): an :class:`AnnotationError` asks for ``format=`` (``data.format``). A folder
is ``ucf101`` (``classInd.txt``), ``hmdb51`` (``<class>_test_splitN.txt``), ``sthv2``
(``labels.json``), or else ``folder`` when one of its subfolders holds a video file.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from effvid.errors import EffvidError

FORMATS: tuple[str, ...] = ("mmaction", "rawframes", "kinetics", "ucf101", "hmdb51", "sthv2", "comma", "folder")
UNLABELLED = -1
"""The label of a record whose annotation has no label (Kinetics test CSV, SSv2 test JSON)."""

KINETICS_TEMPLATE = "{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4"
KINETICS_UNLABELLED_TEMPLATE = "{split}/{youtube_id}_{start:06d}_{end:06d}.mp4"
STHV2_TEMPLATE = "{id}.webm"

VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".mpe", ".ts", ".mts",
    ".m2ts", ".3gp", ".3g2", ".ogv", ".asf", ".vob", ".mxf", ".f4v", ".divx", ".y4m", ".gif"})
"""File extensions (lower case) that mark a path in a list as a video file rather than a frame folder."""

_LABELS = r"(?P<labels>\d+(?:,\d+)*|\d+(?:\s+\d+)*)"  # comma- or space-separated, not mixed
_RAWFRAMES_LINE = re.compile(rf"(?P<path>.+?)\s+(?P<frames>\d+)\s+{_LABELS}")
_MMACTION_LINE = re.compile(rf"(?P<path>.+?)\s+{_LABELS}")
_VIDEO_EXT = "|".join(re.escape(ext[1:]) for ext in sorted(VIDEO_EXTENSIONS))
_MMACTION_VIDEO_LINE = re.compile(rf"(?P<path>.*\.(?:{_VIDEO_EXT}))\s+{_LABELS}", re.IGNORECASE)
_COMMA_LINE = re.compile(r"(?P<path>[^,]+?)\s*,\s*(?P<frames>\d+)\s*,\s*(?P<labels>\d+(?:\s*,\s*\d+)*)")
_UCF_LIST = re.compile(r"(train|test)list(\d+)\.txt", re.IGNORECASE)
_HMDB_SPLIT = re.compile(r"(?P<cls>.+)_test_split(?P<split>\d+)\.txt")
_KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end", "split")


class AnnotationError(EffvidError):
    """An annotation file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset."""

    path: str  # absolute path (root joined) to a video file or a frame folder
    label: int | tuple[int, ...]  # class index; a tuple of indices for multi-label
    video_id: str  # stable id: the path or id exactly as the annotation wrote it
    num_frames: int | None = None  # when the annotation states it (raw-frame lists, comma lists)


@dataclass(frozen=True)
class Annotation:
    """The records of one annotation file, the class names, and the format that was parsed."""

    records: tuple[VideoRecord, ...]
    class_names: tuple[str, ...]
    multilabel: bool
    format: str
    source: str | None = None  # the annotation file or folder it was read from (for messages)


@dataclass(frozen=True)
class _Entry:
    """A parsed entry before class resolution: labels as indices, ``where`` for messages."""

    path: str
    labels: tuple[int, ...]
    video_id: str
    where: str
    num_frames: int | None = None


def load_annotations(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    format: str = "auto",
    split: int = 1,
    subset: str = "train",
    classes: str | os.PathLike | Sequence[str] | None = None,
    path_template: str | None = None,
) -> Annotation:
    """Parse the annotation at ``path`` (a file, or the folder of a UCF101/HMDB51/SSv2 split).

    ``split`` and ``subset`` (``"train"`` or ``"test"``) pick the list for a UCF101 folder (a
    ``trainlist``/``testlist`` file given directly is read as is), for HMDB51 (a split file
    stands for its folder) and for an SSv2 folder (test = ``validation.json``).
    ``path_template`` places Kinetics and SSv2 videos. A ``folder`` annotation (a folder of
    class folders) ignores ``split``, ``subset`` and ``root`` (module docstring).
    Raises :class:`AnnotationError` naming the file (and line) for anything it cannot use.
    """
    source = Path(path)
    if not source.exists():
        raise AnnotationError(f"{source}: annotation file or folder does not exist")
    folder = source if source.is_dir() else source.parent
    base = Path(root) if root is not None else folder
    detected = format == "auto"
    if detected:
        format = _detect_format(source, base)
    elif format not in FORMATS:
        raise AnnotationError(f"{source}: unknown annotation format {format!r}; known: {', '.join(FORMATS)}")
    if format == "folder":
        entries, names = _parse_class_folders(source, _class_names_file(classes, source if source.is_dir() else None))
        return _build(entries, names, format, source, source)
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise AnnotationError(f"{source}: split must be a positive integer, got {split!r}")
    if subset not in ("train", "test"):
        raise AnnotationError(f"{source}: subset must be 'train' or 'test', got {subset!r}")
    if format in ("mmaction", "rawframes", "comma"):
        entries = _parse_list(_require_file(source, format), format, detected=detected)
        names = _class_names_file(classes, folder)
        if names is None:
            names = tuple(str(i) for i in range(max((max(e.labels) for e in entries), default=-1) + 1))
    elif format == "kinetics":
        entries, names = _parse_kinetics(_require_file(source, format), path_template, _class_names_file(classes, folder))
    elif format == "ucf101":
        entries, names = _parse_ucf101(source, split, subset, _class_names_file(classes, None))
    elif format == "hmdb51":
        entries, names = _parse_hmdb51(folder, split, subset, _class_names_file(classes, None))
    else:
        entries, names = _parse_sthv2(source, subset, path_template, _class_names_file(classes, None))
    return _build(entries, names, format, source, base)


def _build(entries: list[_Entry], names: tuple[str, ...], format: str, source: Path, base: Path) -> Annotation:
    if not entries:
        raise AnnotationError(f"{source}: no videos in this {format} annotation")
    multilabel = any(len(e.labels) > 1 for e in entries)
    records = []
    for entry in entries:
        for label in entry.labels:
            if label != UNLABELLED and label >= len(names):
                raise AnnotationError(f"{entry.where}: label {label} is out of range for {len(names)} classes")
        label = entry.labels if multilabel else entry.labels[0]
        records.append(VideoRecord(path=os.path.abspath(base / entry.path), label=label,
                                   video_id=entry.video_id, num_frames=entry.num_frames))
    return Annotation(records=tuple(records), class_names=names, multilabel=multilabel, format=format,
                      source=str(source))


# ---------------------------------------------------------------- reading and detection


def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a BOM removed)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from exc


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(1-based line number, text without trailing space)``."""
    return [(number, line.rstrip()) for number, line in enumerate(_read_text(path).splitlines(), 1) if line.strip()]


def _require_file(path: Path, format: str) -> Path:
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; a {format} annotation is a single file")
    return path


def _detect_format(path: Path, base: Path) -> str:
    """The format of ``path``, from its name or folder contents or its first line (module docstring);
    ``base`` is the folder relative video paths are joined to."""
    if path.is_dir():
        if (path / "classInd.txt").is_file():
            return "ucf101"
        if any(_HMDB_SPLIT.fullmatch(p.name) for p in path.iterdir()):
            return "hmdb51"
        if _sthv2_file(path, ("labels.json",)) is not None:
            return "sthv2"
        if any(_video_files(sub) for sub in _class_folders(path)):
            return "folder"
        nested = [sub.name for sub in _class_folders(path) if any(_video_files(s) for s in _class_folders(sub))]
        hint = (f"; its subfolders {', '.join(nested)} hold class folders of videos: give one of them"
                if nested else "")
        raise AnnotationError(f"{path}: cannot tell the annotation format of this folder (expected classInd.txt, "
                              "<class>_test_splitN.txt files, labels.json, or class folders of videos); name it "
                              f"with format={hint}")
    if path.suffix.lower() == ".json":
        return "sthv2"
    if path.name.lower() == "classind.txt" or _UCF_LIST.fullmatch(path.name):
        return "ucf101"
    if _HMDB_SPLIT.fullmatch(path.name):
        return "hmdb51"
    lines = _read_lines(path)
    if not lines:
        raise AnnotationError(f"{path}: annotation file is empty")
    number, first = lines[0]
    if "youtube_id" in (field.strip().lower() for field in next(csv.reader([first]))):
        return "kinetics"
    text = first.strip()
    if _MMACTION_VIDEO_LINE.fullmatch(text):
        return "mmaction"
    frames = _RAWFRAMES_LINE.fullmatch(text)
    if frames is not None:
        if Path(frames["path"]).suffix.lower() in VIDEO_EXTENSIONS:
            raise AnnotationError(f"{path}:{number}: cannot read list line {first!r}: labels are separated both by "
                                  "spaces and by commas; use one (mmaction: `video.mp4 1 3` or `video.mp4 1,3`)")
        if (base / frames["path"]).is_dir():
            return "rawframes"
        numbers = " ".join(re.split(r"[\s,]+", text[len(frames["path"]):].strip()))
        raise AnnotationError(
            f"{path}:{number}: ambiguous list line {first!r}: {frames['path']!r} has no video extension and is not a "
            f"folder under {base}, so the numbers {numbers!r} may be a frame count and label(s) (rawframes) or "
            "labels (mmaction); set format= (data.format) to rawframes or mmaction")
    mmaction = _MMACTION_LINE.fullmatch(text)
    if mmaction is not None and not mmaction["path"].endswith(","):
        return "mmaction"
    if _COMMA_LINE.fullmatch(text):
        return "comma"
    raise AnnotationError(f"{path}:{number}: cannot tell the annotation format from this line: {first!r}; "
                          f"name it with format= (one of {', '.join(FORMATS)})")


def _class_names_file(classes: str | os.PathLike | Sequence[str] | None, folder: Path | None) -> tuple[str, ...] | None:
    """Names from ``classes`` (a file or a sequence), else from ``folder/classes.txt`` if present."""
    if classes is not None and not isinstance(classes, (str, os.PathLike)):
        names = tuple(str(name) for name in classes)
        if not names:
            raise AnnotationError("classes: the list of class names is empty")
        return names
    if classes is not None:
        path = Path(classes)
        if not path.is_file():
            raise AnnotationError(f"{path}: classes file does not exist")
    elif folder is not None and (folder / "classes.txt").is_file():
        path = folder / "classes.txt"
    else:
        return None
    lines = _read_lines(path)
    if not lines:
        raise AnnotationError(f"{path}: classes file is empty")
    seen: dict[str, int] = {}
    for number, name in lines:
        name = name.strip()
        if name in seen:
            raise AnnotationError(f"{path}:{number}: class name {name!r} repeats line {seen[name]}")
        seen[name] = number
    return tuple(seen)


def _name_indices(names: tuple[str, ...], where: str) -> dict[str, int]:
    if len(set(names)) != len(names):
        raise AnnotationError(f"{where}: class names repeat")
    return {name: index for index, name in enumerate(names)}


def _lookup(name: str, indices: dict[str, int], where: str, text: str) -> int:
    if name not in indices:
        raise AnnotationError(f"{where}: unknown class {name!r} (not among the {len(indices)} class names): {text!r}")
    return indices[name]


# ---------------------------------------------------------------- list formats


_LIST_PATTERNS = {"mmaction": (_MMACTION_LINE, "path label[,label...] or video.ext label [label...]"),
                  "rawframes": (_RAWFRAMES_LINE, "frame_dir total_frames label[,label...] or label [label...]"),
                  "comma": (_COMMA_LINE, "path,num_frames,label1[,label2,...]")}


def _parse_list(path: Path, format: str, *, detected: bool = False) -> list[_Entry]:
    """Entries of a list file; ``detected`` (the format was guessed) refuses an mmaction line whose
    reading is ambiguous (``name 2 5``: ``name`` with labels 2 and 5, or ``name 2`` with label 5)."""
    pattern, layout = _LIST_PATTERNS[format]
    entries = []
    for number, text in _read_lines(path):
        match = (format == "mmaction" and _MMACTION_VIDEO_LINE.fullmatch(text.strip())) or pattern.fullmatch(text.strip())
        if match is None:
            raise AnnotationError(f"{path}:{number}: expected `{layout}` ({format} format), got {text!r}")
        video = match["path"]
        if (detected and format == "mmaction" and re.search(r"\s", match["labels"])
                and Path(video).suffix.lower() not in VIDEO_EXTENSIONS):
            raise AnnotationError(
                f"{path}:{number}: ambiguous list line {text.strip()!r}: {video!r} has no video extension, so "
                f"{match['labels']!r} may be labels or the end of a path with spaces; set format= (data.format) "
                "to mmaction for labels, or give the videos their file extension")
        labels = tuple(int(label) for label in re.split(r"[\s,]+", match["labels"]))
        frames = int(match["frames"]) if "frames" in match.groupdict() else None
        entries.append(_Entry(path=video, labels=labels, video_id=video, where=f"{path}:{number}", num_frames=frames))
    return entries


# ---------------------------------------------------------------- Kinetics


def _parse_kinetics(path: Path, template: str | None, names: tuple[str, ...] | None) -> tuple[list[_Entry], tuple[str, ...]]:
    lines = _read_lines(path)
    if not lines:
        raise AnnotationError(f"{path}: annotation file is empty")
    header_number, header_text = lines[0]
    header = [field.strip().lower() for field in next(csv.reader([header_text]))]
    missing = [column for column in _KINETICS_COLUMNS if column not in header]
    if missing:
        raise AnnotationError(f"{path}:{header_number}: Kinetics CSV header lacks column(s) {', '.join(missing)}: "
                              f"{header_text!r} (expected label,youtube_id,time_start,time_end,split)")
    labelled = "label" in header
    template = template or (KINETICS_TEMPLATE if labelled else KINETICS_UNLABELLED_TEMPLATE)
    rows = []
    for number, text in lines[1:]:
        fields = [field.strip() for field in next(csv.reader([text]))]
        if len(fields) != len(header):
            raise AnnotationError(f"{path}:{number}: expected {len(header)} CSV fields, got {len(fields)}: {text!r}")
        row = dict(zip(header, fields))
        where = f"{path}:{number}"
        if labelled and not row["label"]:
            raise AnnotationError(f"{where}: empty label: {text!r}")
        row["start"] = _whole_seconds(row["time_start"], where, text)
        row["end"] = _whole_seconds(row["time_end"], where, text)
        rows.append((where, text, row))
    if names is None:
        names = tuple(sorted({row["label"] for _, _, row in rows})) if labelled else ()
    indices = _name_indices(names, str(path))
    entries = []
    for where, text, row in rows:
        label = _lookup(row["label"], indices, where, text) if labelled else UNLABELLED
        fields = {key: row.get(key) for key in ("split", "youtube_id", "start", "end")}
        if labelled:
            fields["label"] = row["label"]
        try:
            video = template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            note = " (this CSV has no label column)" if not labelled and "label" in str(exc) else ""
            raise AnnotationError(f"{where}: path_template {template!r} cannot be filled{note}: {exc!r}") from exc
        video_id = f"{row['youtube_id']}_{row['start']:06d}_{row['end']:06d}"
        entries.append(_Entry(path=video, labels=(label,), video_id=video_id, where=where))
    return entries, names


def _whole_seconds(value: str, where: str, text: str) -> int:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds.is_integer() or seconds < 0:
        raise AnnotationError(f"{where}: time {value!r} is not a whole number of seconds: {text!r}")
    return int(seconds)


# ---------------------------------------------------------------- UCF101


def _parse_ucf101(source: Path, split: int, subset: str, names: tuple[str, ...] | None) -> tuple[list[_Entry], tuple[str, ...]]:
    if source.is_dir() or source.name.lower() == "classind.txt":
        folder = source if source.is_dir() else source.parent
        listing = folder / f"{subset}list{split:02d}.txt"
        if not listing.is_file():
            raise AnnotationError(f"{listing}: UCF101 split file for split={split}, subset={subset!r} does not exist")
    else:
        folder, listing = source.parent, source
    class_index = folder / "classInd.txt"
    if not class_index.is_file():
        raise AnnotationError(f"{class_index}: UCF101 needs classInd.txt next to {listing.name}")
    ucf_names = _parse_class_index(class_index)
    if names is None:
        names = ucf_names
    indices = _name_indices(names, "classes")
    entries = []
    for number, text in _read_lines(listing):
        where = f"{listing}:{number}"
        fields = text.split()
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise AnnotationError(f"{where}: expected `Class/video.avi [label]`, got {text!r}")
        video = fields[0]
        if len(fields) == 2:
            position = int(fields[1])
            if not 1 <= position <= len(ucf_names):
                raise AnnotationError(f"{where}: label {position} is not in classInd.txt (1..{len(ucf_names)}): {text!r}")
            name = ucf_names[position - 1]
        elif "/" in video:
            name = video.split("/", 1)[0]
        else:
            raise AnnotationError(f"{where}: no label and no class folder in {text!r}")
        entries.append(_Entry(path=video, labels=(_lookup(name, indices, where, text),), video_id=video, where=where))
    return entries, names


def _parse_class_index(path: Path) -> tuple[str, ...]:
    """``classInd.txt`` (``1 ApplyEyeMakeup`` per line, 1-based, any order) as names by index."""
    by_index: dict[int, str] = {}
    for number, text in _read_lines(path):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) < 1:
            raise AnnotationError(f"{path}:{number}: expected `index ClassName` (1-based), got {text!r}")
        if int(fields[0]) in by_index:
            raise AnnotationError(f"{path}:{number}: class index {fields[0]} repeats: {text!r}")
        by_index[int(fields[0])] = fields[1]
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise AnnotationError(f"{path}: class indices must run 1..{len(by_index)} without gaps")
    return tuple(by_index[i] for i in range(1, len(by_index) + 1))


# ---------------------------------------------------------------- HMDB51


def _parse_hmdb51(folder: Path, split: int, subset: str, names: tuple[str, ...] | None) -> tuple[list[_Entry], tuple[str, ...]]:
    files = {}
    for candidate in folder.iterdir():
        match = _HMDB_SPLIT.fullmatch(candidate.name)
        if match and int(match["split"]) == split:
            files[match["cls"]] = candidate
    if not files:
        raise AnnotationError(f"{folder}: no HMDB51 files <class>_test_split{split}.txt in this folder")
    if names is None:
        names = tuple(sorted(files))
    indices = _name_indices(names, "classes")
    wanted = "1" if subset == "train" else "2"
    entries = []
    for class_name in sorted(files):
        listing = files[class_name]
        for number, text in _read_lines(listing):
            where = f"{listing}:{number}"
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{where}: expected `video.avi 0|1|2`, got {text!r}")
            if fields[1] == wanted:
                video = f"{class_name}/{fields[0]}"
                label = _lookup(class_name, indices, where, text)
                entries.append(_Entry(path=video, labels=(label,), video_id=video, where=where))
    return entries, names


# ---------------------------------------------------------------- a folder of class folders


def _class_folders(path: Path) -> list[Path]:
    """The subfolders of ``path`` (hidden ones left out), sorted by name."""
    try:
        return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot list the folder: {exc.strerror or exc}") from exc


def _video_files(folder: Path) -> list[Path]:
    """The files of ``folder`` with a video extension (hidden ones left out), sorted by name."""
    try:
        return sorted((p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS
                       and not p.name.startswith(".") and p.is_file()), key=lambda p: p.name)
    except OSError as exc:
        raise AnnotationError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from exc


def _parse_class_folders(source: Path, names: tuple[str, ...] | None) -> tuple[list[_Entry], tuple[str, ...]]:
    if not source.is_dir():
        raise AnnotationError(f"{source}: is a file; a folder annotation is a folder of class folders "
                              "(root/<class>/<video>)")
    folders = _class_folders(source)
    if not folders:
        raise AnnotationError(f"{source}: no class folders in this folder (expected root/<class>/<video>)")
    if names is None:
        names = tuple(folder.name for folder in folders)
    indices = _name_indices(names, "classes")
    entries = []
    for folder in folders:
        if folder.name not in indices:
            raise AnnotationError(f"{folder}: class folder {folder.name!r} is not one of the {len(names)} "
                                  "class names given (classes)")
        videos = _video_files(folder)
        if not videos:
            raise AnnotationError(f"{folder}: class folder {folder.name!r} holds no video files "
                                  "(.mp4, .avi, .mkv, .webm, ...: VIDEO_EXTENSIONS); add videos or remove it")
        for video in videos:
            relative = f"{folder.name}/{video.name}"
            entries.append(_Entry(path=relative, labels=(indices[folder.name],), video_id=relative, where=str(video)))
    return entries, names


# ---------------------------------------------------------------- Something-Something v2


def _sthv2_file(folder: Path, names: Iterable[str]) -> Path | None:
    """``folder/NAME`` or ``folder/something-something-v2-NAME``, whichever exists first."""
    for name in names:
        for candidate in (folder / name, folder / f"something-something-v2-{name}"):
            if candidate.is_file():
                return candidate
    return None


def _read_json(path: Path) -> object:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc


def _sthv2_class(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _parse_sthv2(source: Path, subset: str, template: str | None, names: tuple[str, ...] | None) -> tuple[list[_Entry], tuple[str, ...]]:
    if source.is_dir():
        wanted = ("train.json",) if subset == "train" else ("validation.json", "val.json")
        listing = _sthv2_file(source, wanted)
        if listing is None:
            raise AnnotationError(f"{source}: no SSv2 {' or '.join(wanted)} in this folder")
    else:
        listing = source
    folder = listing.parent
    if names is None:
        labels_file = _sthv2_file(folder, ("labels.json",))
        if labels_file is None:
            raise AnnotationError(f"{folder / 'labels.json'}: SSv2 needs labels.json next to {listing.name}")
        names = _parse_sthv2_labels(labels_file)
    indices = _name_indices(names, "classes")
    items = _read_json(listing)
    if not isinstance(items, list):
        raise AnnotationError(f"{listing}: expected a JSON list of {{id, label, template, placeholders}} items")
    template = template or STHV2_TEMPLATE
    labelled = any(isinstance(item, dict) and "template" in item for item in items)
    entries = []
    for position, item in enumerate(items):
        where = f"{listing}: item {position}"
        if not isinstance(item, dict) or "id" not in item:
            raise AnnotationError(f"{where}: expected an object with an 'id', got {json.dumps(item)[:200]}")
        if labelled:
            if not isinstance(item.get("template"), str):
                raise AnnotationError(f"{where} (id {item['id']}): no 'template'")
            label = _lookup(_sthv2_class(item["template"]), indices, f"{where} (id {item['id']})", item["template"])
        else:
            label = UNLABELLED
        video_id = str(item["id"])
        try:
            video = template.format(id=video_id)
        except (KeyError, IndexError, ValueError) as exc:
            raise AnnotationError(f"{where}: path_template {template!r} cannot be filled: {exc!r}") from exc
        entries.append(_Entry(path=video, labels=(label,), video_id=video_id, where=where))
    return entries, names


def _parse_sthv2_labels(path: Path) -> tuple[str, ...]:
    """``labels.json`` (``{name: "index"}``) as names ordered by index."""
    mapping = _read_json(path)
    if not isinstance(mapping, dict):
        raise AnnotationError(f"{path}: expected a JSON object {{class name: \"index\"}}")
    by_index: dict[int, str] = {}
    for name, value in mapping.items():
        if not str(value).isdigit() or int(value) in by_index:
            raise AnnotationError(f"{path}: class {name!r} has a bad or repeated index {value!r}")
        by_index[int(value)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise AnnotationError(f"{path}: class indices must run 0..{len(by_index) - 1} without gaps")
    return tuple(by_index[i] for i in range(len(by_index)))
