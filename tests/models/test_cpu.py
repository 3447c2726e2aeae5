"""models/cpu.py: fields of /proc/cpuinfo."""
from tunesmith.models.cpu import cpuinfo_field


def test_cpuinfo_fields_are_read_from_the_file(tmp_path):
    amd = tmp_path / "amd"
    amd.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    none = tmp_path / "arm"
    none.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    assert [cpuinfo_field("vendor_id", str(path)) for path in (amd, intel, none, tmp_path / "missing")] == \
        ["AuthenticAMD", "GenuineIntel", "", ""]
    assert cpuinfo_field("cpu family", str(amd)) == "25"
