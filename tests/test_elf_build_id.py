"""The build-id of a module comes from its PT_NOTE segment, else from its SHT_NOTE
sections: a file whose program headers are gone (an object file, or a debug file whose
headers were cut) still names its build-id."""

from __future__ import annotations

import struct
import subprocess

from memplace.elf import build_id, open_elf


def test_build_id_from_note_sections_when_there_are_no_program_headers(tmp_path):
    src = tmp_path / "p.c"
    src.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "p"
    subprocess.run(["gcc", "-Wl,--build-id=sha1", "-o", str(exe), str(src)], check=True)
    readelf = subprocess.run(["readelf", "-n", str(exe)], capture_output=True, text=True).stdout
    expected = readelf.split("Build ID:")[1].split()[0]
    assert build_id(str(exe)) == expected
    # the same file with e_phnum = 0: only the section headers are left to find it
    data = bytearray(exe.read_bytes())
    struct.pack_into("<H", data, 56, 0)  # e_phnum of an ELF64 header
    headless = tmp_path / "headless"
    headless.write_bytes(bytes(data))
    assert open_elf(str(headless)).build_id.hex() == expected
