"""The read-around of the disk under a file device: found in /sys, warned about when large,
part of what the compile cache and the measurement cache key on."""

import os
import textwrap

import pytest

from memplace.placement import compile_cache, measure, policy, sysfs
from memplace.placement.devices import read_topology
from memplace.placement.policy import check, load


def fake_disk(root, directory, kib, *, partition=False):
    """A /sys under `root` in which the disk holding `directory` reads `kib` KiB around:
    as a bdi entry, or (partition=True) only as a partition whose disk has the queue."""
    dev = os.stat(directory).st_dev
    name = f"{os.major(dev)}:{os.minor(dev)}"
    if partition:
        disk = root / "devices" / "vdz"
        (disk / "queue").mkdir(parents=True)
        (disk / "queue" / "read_ahead_kb").write_text(f"{kib}\n")
        (disk / "vdz1").mkdir()
        (disk / "vdz1" / "partition").write_text("1\n")
        (root / "dev" / "block").mkdir(parents=True)
        (root / "dev" / "block" / name).symlink_to(disk / "vdz1")
        return str(disk / "queue" / "read_ahead_kb")
    bdi = root / "class" / "bdi" / name
    bdi.mkdir(parents=True)
    (bdi / "read_ahead_kb").write_text(f"{kib}\n")
    return str(bdi / "read_ahead_kb")


def test_the_disks_read_ahead_is_found_through_its_bdi(tmp_path):
    where = fake_disk(tmp_path / "sys", tmp_path, 8192)
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), "/dev/null") == (8192 << 10, where)


def test_a_partition_reads_its_disks_queue(tmp_path):
    where = fake_disk(tmp_path / "sys", tmp_path, 512, partition=True)
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), "/dev/null") == (512 << 10, where)


def test_nothing_known_is_none(tmp_path):
    (tmp_path / "sys").mkdir()
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), "/dev/null") is None
    assert sysfs.read_around(str(tmp_path / "absent")) is None
    bdi = tmp_path / "sys2"
    fake_disk(bdi, tmp_path, 0)
    (next(bdi.rglob("read_ahead_kb"))).write_text("garbage\n")
    assert sysfs.read_around(str(tmp_path), str(bdi), "/dev/null") is None


def test_a_dax_mount_has_no_read_around(tmp_path):
    fake_disk(tmp_path / "sys", tmp_path, 8192)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw,relatime 0 0\n/dev/pmem0 {tmp_path} ext4 rw,dax=always 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts)) is None
    mounts.write_text(f"/dev/vda / ext4 rw,relatime 0 0\n/dev/pmem0 {tmp_path} ext4 rw,dax=never 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts))[0] == 8192 << 10
    # dax=inode leaves it to each file: the warning stays
    mounts.write_text(f"/dev/vda / ext4 rw,relatime 0 0\n/dev/pmem0 {tmp_path} ext4 rw,dax=inode 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts)) is not None
    # /proc/mounts escapes a space in a mount point as \040
    spaced = tmp_path / "a b"
    spaced.mkdir()
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\n/dev/pmem0 {str(spaced).replace(' ', chr(92) + '040')} ext4 rw,dax 0 0\n")
    assert sysfs.read_around(str(spaced), str(tmp_path / "sys"), str(mounts)) is None
    # a mount point that only shares a prefix with the path is another filesystem
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\n/dev/pmem0 {tmp_path}x ext4 rw,dax 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts)) is not None


def fake_btrfs(root, kib):
    """A btrfs filesystem in /sys under `root` whose one device is /dev/null (a device
    number any machine has), its own bdi reading `kib` KiB around."""
    rdev = os.stat("/dev/null").st_rdev
    fs = root / "fs" / "btrfs" / "0f1e2d3c-uuid"
    (fs / "devices" / "null").mkdir(parents=True)
    (fs / "devices" / "null" / "dev").write_text(f"{os.major(rdev)}:{os.minor(rdev)}\n")
    (fs / "bdi").mkdir()
    (fs / "bdi" / "read_ahead_kb").write_text(f"{kib}\n")
    return str(fs / "bdi" / "read_ahead_kb")


def test_btrfs_reads_around_through_its_own_bdi(tmp_path):
    where = fake_btrfs(tmp_path / "sys", 4096)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\n/dev/null {tmp_path} btrfs rw,relatime 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts)) == (4096 << 10, where)
    # another btrfs (its devices are not this mount's source): not this one's bdi
    mounts.write_text(f"/dev/zero {tmp_path} btrfs rw 0 0\n")
    assert sysfs.read_around(str(tmp_path), str(tmp_path / "sys"), str(mounts)) is None


def test_overlayfs_reads_around_as_its_upper_directory(tmp_path):
    where = fake_btrfs(tmp_path / "sys", 4096)
    (tmp_path / "up" / "u").mkdir(parents=True)
    (tmp_path / "merged").mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/null {tmp_path}/up btrfs rw 0 0\n"
                      f"overlay {tmp_path}/merged overlay rw,lowerdir=/x,upperdir={tmp_path}/up/u,workdir=/w 0 0\n")
    assert sysfs.read_around(str(tmp_path / "merged"), str(tmp_path / "sys"), str(mounts)) == (4096 << 10, where)


def test_this_machines_answer_is_a_number_of_bytes_or_none(tmp_path):
    found = sysfs.read_around(str(tmp_path))
    assert found is None or (found[0] % 1024 == 0 and os.path.exists(found[1]))


def file_policy(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(f"""\
        version = 1
        default = "slow"
        [devices.slow]
        kind = "file"
        path = "{tmp_path}"
        """))
    return path


@pytest.mark.parametrize("kib, warned", [(8192, True), (1024, False), (128, False)])
def test_a_large_read_around_under_a_file_device_is_one_warning(tmp_path, monkeypatch, kib, warned):
    knob = "/sys/class/bdi/9:9/read_ahead_kb"
    monkeypatch.setattr(policy, "read_around", lambda path: (kib << 10, knob))
    found = check(load(file_policy(tmp_path)), read_topology("/sys"), None)
    warnings = [p.message for p in found if p.level == "warning"]
    assert [p for p in found if p.level == "error"] == []
    if not warned:
        assert warnings == []
        return
    msg, = warnings
    assert "\n" not in msg and msg.startswith(str(tmp_path / "policy.toml"))
    for needle in ("device 'slow'", f"reads {kib // 1024}MiB around every page fault", knob,
                   f"echo 128 > {knob}"):
        assert needle in msg, (needle, msg)


def test_a_changed_read_around_is_a_miss_of_the_compile_cache(tmp_path, monkeypatch):
    kib = [8192]
    monkeypatch.setattr(compile_cache, "read_around", lambda path: (kib[0] << 10, "knob"))
    entry = [str(tmp_path), None, compile_cache._directory_facts(str(tmp_path), None)]
    assert compile_cache._directory_holds(entry)
    kib[0] = 128
    assert not compile_cache._directory_holds(entry)


def test_a_file_devices_measurement_is_keyed_by_its_read_around(tmp_path, monkeypatch):
    kib = [8192]
    monkeypatch.setattr(measure, "read_around", lambda path: (kib[0] << 10, "knob"))
    at_8m = measure.target_for(f"file:{tmp_path}", "slow").identity
    kib[0] = 128
    at_128k = measure.target_for(f"file:{tmp_path}", "slow").identity
    assert at_8m.endswith("@ra8192k") and at_128k.endswith("@ra128k")
    assert at_8m.rsplit("@", 1)[0] == at_128k.rsplit("@", 1)[0]
