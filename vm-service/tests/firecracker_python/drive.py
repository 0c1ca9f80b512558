"""Drives a Firecracker-mode vm-service through the PyPI client
`firecracker-python` (its `firecracker.api.Api`), checking what the guest did
on its serial console, not only status codes.

Run by vm-service/tests/firecracker_python.rs, which starts the VMM (named
`firecracker`) with its stdout in CONSOLE. Prints `STEP ...` lines and `OK`.
"""

import argparse
import time

from firecracker.api import Api
from firecracker.exceptions import APIError


def console_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def ticks(path):
    return sum(1 for line in console_text(path).splitlines() if line.strip() == "tick")


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def step(message):
    print(f"STEP {message}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--console", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--boot-timeout", type=float, default=300)
    args = parser.parse_args()

    api = Api(args.socket)

    def describe_ok():
        try:
            return api.describe.get().status_code == 200
        except APIError:
            return False

    wait_for("the API socket", describe_ok, 30)
    info = api.describe.get().json()
    assert info["state"] == "Not started", info
    assert info["app_name"] == "Firecracker", info
    assert info["id"] == "py-test", info
    version = api.version.get().json()["firecracker_version"]
    step(f"instance {info['id']} {info['state']!r}, API version {version}")

    boot_args = (
        "console=ttyS0 reboot=k panic=-1 cryptomgr.notests=1 "
        '-- sh -c "while true; do echo tick; sleep 1; done"'
    )
    r = api.boot.put(
        kernel_image_path=args.kernel, initrd_path=args.initrd, boot_args=boot_args
    )
    assert r.status_code == 204 and r.content == b"", (r.status_code, r.content)
    r = api.machine_config.put(
        vcpu_count=1, mem_size_mib=256, smt=False, track_dirty_pages=False
    )
    assert r.status_code == 204 and r.content == b""
    machine = api.machine_config.get().json()
    assert (machine["vcpu_count"], machine["mem_size_mib"]) == (1, 256), machine
    try:
        api.machine_config.put(vcpu_count=1, mem_size_mib=256, smt=True)
        raise AssertionError("smt=true was accepted")
    except APIError as e:
        assert "smt" in str(e), e
    step("configured boot-source and machine-config")

    started = time.monotonic()
    api.actions.put(action_type="InstanceStart")
    assert api.describe.get().json()["state"] == "Running"
    wait_for(
        "VM-GUEST-READY on the console",
        lambda: "VM-GUEST-READY" in console_text(args.console),
        args.boot_timeout,
    )
    wait_for("two ticks", lambda: ticks(args.console) >= 2, 60)
    step(f"guest ready and ticking after {time.monotonic() - started:.1f} s")

    api.vm.patch(state="Paused")
    assert api.describe.get().json()["state"] == "Paused"
    before = ticks(args.console)
    time.sleep(3)
    after = ticks(args.console)
    assert before == after, f"the guest printed while paused: {before} -> {after}"
    step(f"paused: no tick in 3 s ({after} so far)")

    api.vm.patch(state="Resumed")
    assert api.describe.get().json()["state"] == "Running"
    wait_for("a tick after resuming", lambda: ticks(args.console) > after, 60)
    step(f"resumed: ticking again ({ticks(args.console)} so far)")

    config = api.vm_config.get().json()
    assert config["boot-source"]["kernel_image_path"] == args.kernel, config
    assert config["boot-source"]["boot_args"] == boot_args, config
    assert config["machine-config"]["mem_size_mib"] == 256, config
    step("GET /vm/config shows the configuration")

    try:
        api.boot.put(kernel_image_path=args.kernel)
        raise AssertionError("PUT /boot-source was accepted after InstanceStart")
    except APIError as e:
        assert "pre-boot" in str(e), e
    step("pre-boot resource refused after start")

    api.actions.put(action_type="FlushMetrics")
    api.actions.put(action_type="SendCtrlAltDel")
    step("stopped with SendCtrlAltDel")
    api.close()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
