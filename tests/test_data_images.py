"""Image preparation (the paper's resize + centre crop, stretch, pad), the loader and the prepared-image cache."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from _messages import raises_one_line
from PIL import Image
from test_data_layouts import make_kadid, write_images

from vpkit.data import PAD_COLOUR, ensure_cache, load_table, make_loader, prepare_image
from vpkit.data import cache as cache_module


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(("width", "height", "left", "top"), [
    (40, 30, 3, 0),   # 40x30 -> 26x20 (int(20*40/30) = 26), crop left round(3.0) = 3
    (27, 20, 4, 0),   # already 20 high: no resize; round(3.5) = 4 (torchvision's rounding)
    (25, 20, 2, 0),   # round(2.5) = 2
    (30, 45, 0, 5),   # portrait: 20x30, crop top round(5.0) = 5
])
def test_resize_crop_matches_torchvision_resize_then_center_crop(width, height, left, top):
    image = random_image(width, height)
    short, long = min(width, height), max(width, height)
    resized = image
    if short != 20:
        new_long = int(20 * long / short)
        resized = image.resize((20, new_long) if width <= height else (new_long, 20), Image.Resampling.BICUBIC)
    expected = np.asarray(resized)[top:top + 20, left:left + 20]
    out = prepare_image(image, 20)
    assert out.dtype == np.uint8 and out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out, expected)


def test_stretch_squashes_like_mplug_owl2(tmp_path):
    image = random_image(40, 30)
    expected = image.resize((40, 40), Image.Resampling.BICUBIC).resize((20, 20), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(prepare_image(image, 20, "stretch"), np.asarray(expected))


def test_pad_centres_on_the_clip_mean_colour():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    out = prepare_image(image, 40, "pad")
    assert tuple(out[0, 0]) == PAD_COLOUR and tuple(out[-1, -1]) == PAD_COLOUR
    assert tuple(out[20, 20]) == (255, 0, 0)
    assert (out[:9, 20] == PAD_COLOUR).all() and (out[11:29, 20] == (255, 0, 0)).all()


def test_paths_grey_and_alpha_images_become_rgb(tmp_path):
    Image.new("L", (30, 30), 77).save(tmp_path / "grey.png")
    Image.new("RGBA", (30, 30), (1, 2, 3, 4)).save(tmp_path / "alpha.png")
    assert (prepare_image(tmp_path / "grey.png", 16) == 77).all()
    assert tuple(prepare_image(str(tmp_path / "alpha.png"), 16)[5, 5]) == (1, 2, 3)
    with raises_one_line(ValueError, names=("'squeeze'", "resize")):
        prepare_image(tmp_path / "grey.png", 16, "squeeze")


@pytest.fixture
def kadid_table(tmp_path):
    make_kadid(tmp_path, n_refs=2, n_types=2)
    write_images(tmp_path / "kadid10k" / "images", [f"I{r:02d}_{t:02d}_{lv:02d}.png" for r in (1, 2)
                                                    for t in (1, 2) for lv in range(1, 6)], size=(40, 30), seed=5)
    return load_table("kadid", tmp_path, count_check="off")


def collect(loader):
    batches = list(loader)
    return (torch.cat([b["image"] for b in batches]), torch.cat([b["label"] for b in batches]),
            [n for b in batches for n in b["name"]])


def test_eval_loader_keeps_order_and_does_not_flip(kadid_table):
    loader = make_loader(kadid_table, "train", image_size=24, batch_size=4, train=False, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 3, 24, 24)
    assert batch["label"].dtype == torch.float32
    rows = kadid_table.rows("train")
    images, labels, names = collect(loader)
    assert names == rows["name"].tolist()
    np.testing.assert_allclose(labels.numpy(), rows["label"].to_numpy(dtype=np.float32))
    for k in (0, len(names) - 1):
        np.testing.assert_array_equal(images[k].permute(1, 2, 0).numpy(), prepare_image(rows["path"].iloc[k], 24))


def test_train_loader_shuffles_and_flips_reproducibly(kadid_table):
    def run():
        loader = make_loader(kadid_table, "all", image_size=24, batch_size=5, train=True, seed=3, num_workers=0)
        return collect(loader), collect(loader)

    (first, second), (again, _) = run(), run()
    assert first[2] == again[2] and torch.equal(first[0], again[0])
    assert first[2] != second[2]  # a new epoch, a new order
    rows = kadid_table.frame.set_index("name")
    flipped = 0
    for image, name in zip(first[0], first[2]):
        plain = prepare_image(rows.loc[name, "path"], 24)
        got = image.permute(1, 2, 0).numpy()
        if np.array_equal(got, plain[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(got, plain)
    assert 0 < flipped < len(first[2])


def test_empty_split_is_an_error(kadid_table):
    kadid_table.frame["split"] = "train"
    with raises_one_line(ValueError, names=("'test'", "split_kadid10k.csv"), fix=False):  # pre-flight tells users
        make_loader(kadid_table, "test", 24, 4, train=False)


def test_cache_equals_uncached_and_worker_processes_work(kadid_table, tmp_path):
    plain = collect(make_loader(kadid_table, "test", 24, 3, train=False, num_workers=0))
    cached = collect(make_loader(kadid_table, "test", 24, 3, train=False, num_workers=1,
                                 cache_dir=tmp_path / "cache", progress=False))
    assert plain[2] == cached[2]
    assert torch.equal(plain[0], cached[0])
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and files[0].endswith("24px-resize_crop.json") and files[1].endswith(".npy")


def test_cache_is_reused_then_rebuilt_when_a_source_or_the_preparation_changes(kadid_table, tmp_path):
    cache_dir = tmp_path / "cache"
    built = ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    first_mtime = built.array_path.stat().st_mtime_ns
    time.sleep(0.01)
    again = ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    assert again.array_path.stat().st_mtime_ns == first_mtime  # not rebuilt

    changed = kadid_table.frame["path"].iloc[3]
    random_image(40, 30, seed=99).save(changed)
    stamp = time.time() + 5
    os.utime(changed, (stamp, stamp))
    rebuilt = ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    assert rebuilt.array_path.stat().st_mtime_ns != first_mtime
    np.testing.assert_array_equal(rebuilt.open()[3], prepare_image(changed, 16))

    padded = ensure_cache(kadid_table, 16, "pad", cache_dir, num_workers=0, progress=False)
    assert padded.array_path != rebuilt.array_path
    np.testing.assert_array_equal(padded.open()[0], prepare_image(kadid_table.frame["path"].iloc[0], 16, "pad"))


def test_a_killed_build_leaves_no_half_cache(kadid_table, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    good = ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    random_image(40, 30, seed=7).save(kadid_table.frame["path"].iloc[0])
    os.utime(kadid_table.frame["path"].iloc[0], (time.time() + 9, time.time() + 9))
    calls = {"n": 0}
    real = cache_module.prepare_image

    def dies_halfway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "prepare_image", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    leftovers = [p.name for p in cache_dir.iterdir() if ".tmp" in p.name]
    assert leftovers == []
    assert not good.manifest_path.exists()  # the stale cache is no longer trusted
    monkeypatch.setattr(cache_module, "prepare_image", real)
    fresh = ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    np.testing.assert_array_equal(fresh.open()[0], prepare_image(kadid_table.frame["path"].iloc[0], 16))


def test_temporaries_of_dead_builds_are_removed(kadid_table, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    stem = cache_module.cache_stem(kadid_table, 16, "resize_crop")
    dead = cache_dir / f".{stem}.999999999.tmp.npy"
    dead.write_bytes(b"half")
    ensure_cache(kadid_table, 16, "resize_crop", cache_dir, num_workers=0, progress=False)
    assert not dead.exists()


# -- image modes found in the wild ---------------------------------------------------------------------


def write_png(path, width: int, height: int, bit_depth: int, colour_type: int, pixel_data: bytes) -> None:
    """A PNG written chunk by chunk (right CRCs) around `pixel_data`, the IDAT content as given."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel_data)
                     + chunk(b"IEND", b""))


def write_png16(path, array) -> None:
    """A 16-bit PNG (grey HxW, or RGB HxWx3) written byte by byte: Pillow cannot write 16-bit colour PNGs."""
    import zlib

    array = np.asarray(array, dtype=">u2")
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[y].tobytes() for y in range(height))  # filter type 0 on every row
    write_png(path, width, height, 16, 0 if array.ndim == 2 else 2, zlib.compress(rows))


@pytest.mark.parametrize("colour", [False, True])
def test_a_16_bit_png_prepares_to_the_pixels_of_its_8_bit_version(tmp_path, colour):
    rng = np.random.default_rng(4)
    eight = rng.integers(0, 256, (30, 40, 3) if colour else (30, 40), dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    # grey (scaled by vpkit): noise in the low byte still rounds back; colour (Pillow keeps the high byte): none
    noise = 0 if colour else rng.integers(0, 128, eight.shape)
    sixteen = np.minimum(eight.astype(np.int64) * 257 + noise, 65535)
    write_png16(tmp_path / "sixteen.png", sixteen)
    with Image.open(tmp_path / "sixteen.png") as opened:
        assert opened.mode == ("RGB" if colour else "I;16")  # Pillow reduces 16-bit colour itself, not grey
    for method in ("resize_crop", "pad"):
        wanted = prepare_image(tmp_path / "eight.png", 24, method).astype(int)
        got = prepare_image(tmp_path / "sixteen.png", 24, method).astype(int)
        assert np.abs(got - wanted).max() <= 1 and got.mean() < 200  # not the all-white image of before


def test_every_8_bit_mode_becomes_rgb_and_unknown_ranges_are_refused(tmp_path):
    from vpkit.data.images import ImageError

    base = random_image(20, 16, seed=2)
    for mode in ("1", "L", "P", "LA", "RGBA", "CMYK", "YCbCr", "La", "I;16B"):
        image = base.convert("RGBA").convert("La") if mode == "La" else base.convert(mode)
        assert prepare_image(image, 8).shape == (8, 8, 3), mode
    grey_ints = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32))  # mode I holding 8-bit values
    np.testing.assert_array_equal(prepare_image(grey_ints, 8), prepare_image(base.convert("L"), 8))
    for values in (np.linspace(0, 1, 320, dtype=np.float32), np.arange(320, dtype=np.int32) * 200):
        Image.fromarray(values.reshape(16, 20)).save(tmp_path / "wide.tif")
        with raises_one_line(ImageError, names=(tmp_path / "wide.tif", "8- or 16-bit")):
            prepare_image(tmp_path / "wide.tif", 8)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with raises_one_line(ImageError, names=(tmp_path / "broken.png",)):
        prepare_image(tmp_path / "broken.png", 8)


def test_one_image_check_serves_the_fast_pre_flight_and_the_full_data_check(tmp_path):
    from vpkit.data.images import image_problem

    random_image(12, 10, seed=1).save(tmp_path / "good.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "good.png").read_bytes()[:60])
    # every chunk's CRC is right but the pixel data is not zlib: only inflating (the full check) sees it
    write_png(tmp_path / "bad_pixels.png", 4, 3, 8, 0, b"not zlib data")
    Image.fromarray(np.full((10, 12), 0.5, np.float32)).save(tmp_path / "floats.tif")
    Image.fromarray(np.arange(120, dtype=np.int32).reshape(10, 12)).save(tmp_path / "ints.tif")  # 8-bit values
    for full in (False, True):
        assert image_problem(tmp_path / "good.png", full=full) == ("RGB", None)
        assert image_problem(tmp_path / "ints.tif", full=full) == ("I", None)
        assert image_problem(tmp_path / "absent.png", full=full) == (None, "missing")
        mode, problem = image_problem(tmp_path / "truncated.png", full=full)
        assert mode == "RGB" and problem.startswith(("OSError", "SyntaxError"))
        mode, problem = image_problem(tmp_path / "floats.tif", full=full)
        assert mode == "F" and problem.startswith("floating-point pixels (PIL mode F") and "no fixed range" in problem
    assert image_problem(tmp_path / "bad_pixels.png", full=False) == ("L", None)
    mode, problem = image_problem(tmp_path / "bad_pixels.png", full=True)
    assert mode == "L" and problem == "OSError: broken data stream when reading image file"


def test_data_check_reports_the_modes_it_found(tmp_path):
    from vpkit.data.check import check_datasets

    frame = make_kadid(tmp_path, n_refs=1, n_types=1)
    names = frame["dist_img"].tolist()
    write_png16(tmp_path / "kadid10k" / "images" / names[0], np.full((10, 12), 30000))
    Image.fromarray(np.full((10, 12), 0.5, np.float32)).save(tmp_path / "kadid10k" / "images" / names[1], format="TIFF")
    lines: list[str] = []
    assert check_datasets(tmp_path, ["kadid"], count_check="off", all_errors=True, progress=False,
                          out=lines.append) == 1
    modes = next(line for line in lines if "modes:" in line)
    assert "RGB 3" in modes and "I;16 1 (16-bit grey, scaled to 8 bits)" in modes and "F 1" in modes
    errors = [line for line in lines if "ERROR" in line and "cannot be read or used" in line]  # not split sizes
    assert len(errors) == 1 and names[1] in errors[0] and "no fixed range" in errors[0]


def test_a_corrupt_image_read_by_a_loader_worker_is_named_in_one_line(kadid_table):
    from vpkit.data.images import ImageError

    bad = kadid_table.rows("test")["path"].iloc[0]
    with open(bad, "wb") as file:
        file.write(b"not an image")
    with pytest.raises(ImageError) as caught:
        collect(make_loader(kadid_table, "test", 24, 2, train=False, num_workers=1))
    assert str(caught.value).startswith(f"{bad}: cannot be read as an image") and "\n" not in str(caught.value)


def save_turned_jpeg(path, orientation: int = 6, size=(40, 30)) -> None:
    """A JPEG whose EXIF tells viewers to turn it (6: 90 degrees clockwise), as phone cameras write them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    random_image(*size).save(path, format="JPEG", exif=exif)


def test_exif_orientation_is_ignored_and_said(tmp_path):
    """vpkit uses the stored pixels, as the paper's loader does; the note says so for the images it concerns."""
    from vpkit.data.images import describe_notes, image_notes

    save_turned_jpeg(tmp_path / "phone.jpg")
    random_image(40, 30).save(tmp_path / "plain.jpg", format="JPEG")
    with Image.open(tmp_path / "phone.jpg") as stored:
        as_stored = prepare_image(stored.convert("RGB"), 16)
    np.testing.assert_array_equal(prepare_image(tmp_path / "phone.jpg", 16), as_stored)  # not turned
    assert image_notes(tmp_path / "plain.jpg") == []
    notes = image_notes(tmp_path / "phone.jpg")
    assert [(n.kind, n.detail) for n in notes] == [("orientation", "orientation 6")]
    (line,) = describe_notes(notes * 5)
    assert line.startswith("5 image(s) carry an EXIF orientation that vpkit ignores: ")
    assert line.count("phone.jpg (orientation 6)") == 3 and " and 2 more; " in line and "paper's loader" in line


def test_a_large_image_is_said_in_vpkits_words_and_its_limit_can_be_raised(tmp_path, monkeypatch):
    import warnings

    from vpkit.data import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns above 1,000 pixels, refuses above 2,000
    random_image(40, 30).save(tmp_path / "large.png")  # 1,200 pixels: read, with vpkit's note
    random_image(50, 48).save(tmp_path / "huge.png")  # 2,400 pixels: refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert prepare_image(tmp_path / "large.png", 16).shape == (16, 16, 3)
        with images.large_image_warnings_told():
            notes = images.image_notes(tmp_path / "large.png")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]  # not Pillow's own
    (line,) = images.describe_notes(notes)
    assert "1 image(s) are over Pillow's Image.MAX_IMAGE_PIXELS (1,000 pixels) and were read anyway" in line
    with pytest.raises(images.ImageError) as refused:
        prepare_image(tmp_path / "huge.png", 16)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'huge.png'}: too large: 2,400 pixels, over Pillow's limit of 2,000")
    assert "set VPKIT_MAX_IMAGE_PIXELS=2400 in the environment" in message and "intact copy" not in message
    assert images.image_problem(tmp_path / "huge.png", full=True)[1].startswith("too large: 2,400 pixels")

    for text, limit in (("3000", 3000), ("200_000_000", 200_000_000), ("none", None)):
        monkeypatch.setenv(images.PIXEL_LIMIT_VARIABLE, text)
        images.apply_pixel_limit()
        assert Image.MAX_IMAGE_PIXELS == limit
    assert prepare_image(tmp_path / "huge.png", 16).shape == (16, 16, 3)  # no limit
    monkeypatch.setenv(images.PIXEL_LIMIT_VARIABLE, "lots")
    with raises_one_line(ValueError, names=("VPKIT_MAX_IMAGE_PIXELS", "'lots'")):
        images.apply_pixel_limit()


def test_data_check_warns_of_ignored_rotations_and_large_images_and_says_how_to_read_a_huge_one(tmp_path,
                                                                                                 monkeypatch):
    import warnings

    from vpkit.data.check import check_datasets

    frame = make_kadid(tmp_path, n_refs=1, n_types=1)
    folder = tmp_path / "kadid10k" / "images"
    names = frame["dist_img"].tolist()
    save_turned_jpeg(folder / names[0], size=(20, 15))  # a JPEG under a .png name reads all the same
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    random_image(40, 30).save(folder / names[1], format="PNG")
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_datasets(tmp_path, ["kadid"], count_check="off", all_errors=True, progress=False, out=lines.append)
    assert not caught  # Pillow's own warning is not shown
    assert not [line for line in lines if "cannot be read or used" in line]  # (the tiny splits are a problem)
    warned = [line for line in lines if "WARNING" in line]
    assert any(f"1 image(s) carry an EXIF orientation that vpkit ignores: {folder / names[0]}" in w for w in warned)
    assert any("1 image(s) are over Pillow's Image.MAX_IMAGE_PIXELS (1,000 pixels)" in w for w in warned)
    random_image(50, 48).save(folder / names[2], format="PNG")
    lines.clear()
    assert check_datasets(tmp_path, ["kadid"], count_check="off", all_errors=True, progress=False,
                          out=lines.append) == 1
    (error,) = [line for line in lines if "cannot be read or used" in line]
    assert "too large: 2,400 pixels" in error and "Fix: raise the limit as said" in error
