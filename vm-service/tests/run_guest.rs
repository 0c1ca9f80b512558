//! End to end on KVM: the built-in guest boots and reports what it sees, under
//! both executors, with 1 and 2 vCPUs; a spinning guest is paused, resumed and
//! stopped from another thread. Skipped, with the reason printed, where
//! /dev/kvm cannot be opened.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_core::config::{BlockConfig, DeviceConfig, NetBackendConfig, NetConfig, VmConfig};
use vm_service::executor::RunState;
use vm_service::{guest, ExecutorKind, StopReason, VmmBuilder, VmmError};

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn virtual_nic() -> DeviceConfig {
    DeviceConfig::Net(NetConfig {
        id: "net0".into(),
        backend: NetBackendConfig::Virtual {
            switch: "test".into(),
        },
        mac: None,
    })
}

fn boot_builtin(executor: ExecutorKind, vcpus: u32) {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let console = Console::default();
    let config = VmConfig {
        vcpus,
        memory_mib: 64,
        devices: vec![virtual_nic()],
        ..VmConfig::default()
    };
    let vmm = VmmBuilder::new(config)
        .executor(executor)
        .serial_output(Box::new(console.clone()))
        .build()
        .expect("build the VM");
    let reason = vmm.start().expect("start").wait();
    let out = console.text();
    assert_eq!(reason, StopReason::GuestReset, "console:\n{out}");
    assert!(out.contains(guest::BANNER), "console:\n{out}");
    assert!(out.contains("memory: 64 MiB"), "console:\n{out}");
    assert!(
        out.contains(&format!("vCPUs: {vcpus}\r\n")),
        "console:\n{out}"
    );
    if vcpus > 1 {
        assert!(
            out.contains(&format!("vCPUs started: {vcpus}")),
            "console:\n{out}"
        );
    }
    // The first virtio-mmio slot holds the NIC: magic, version 2, device id 1 (net).
    assert!(
        out.contains("virtio-mmio @ 0xd0000000: magic ok, version 2, device id 1"),
        "console:\n{out}"
    );
    assert!(
        out.contains("guest: requesting shutdown"),
        "console:\n{out}"
    );
}

#[test]
fn builtin_guest_sync_one_vcpu() {
    boot_builtin(ExecutorKind::Sync, 1);
}

#[test]
fn builtin_guest_sync_two_vcpus() {
    boot_builtin(ExecutorKind::Sync, 2);
}

#[test]
fn builtin_guest_async_one_vcpu() {
    boot_builtin(ExecutorKind::Async, 1);
}

#[test]
fn builtin_guest_async_two_vcpus() {
    boot_builtin(ExecutorKind::Async, 2);
}

fn drive(path: &std::path::Path, root: bool) -> DeviceConfig {
    DeviceConfig::Block(BlockConfig {
        drive_id: "disk0".into(),
        path_on_host: path.to_path_buf(),
        is_root_device: root,
        is_read_only: false,
    })
}

/// A drive listed after a NIC still takes the first slot (drives come first,
/// so the root drive is /dev/vda): the built-in guest finds a block device.
#[test]
fn builtin_guest_sees_the_drive_on_the_first_slot() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let console = Console::default();
    let config = VmConfig {
        memory_mib: 64,
        devices: vec![virtual_nic(), drive(&image, true)],
        ..VmConfig::default()
    };
    let vmm = VmmBuilder::new(config)
        .serial_output(Box::new(console.clone()))
        .build()
        .expect("build the VM");
    // The image is locked while the VM has it: a second VM cannot open it.
    let second = VmmBuilder::new(VmConfig {
        memory_mib: 64,
        devices: vec![drive(&image, false)],
        ..VmConfig::default()
    })
    .serial_output(Box::new(std::io::sink()))
    .build();
    match second {
        Err(e @ VmmError::Device { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("disk0") && msg.contains("disk.img") && msg.contains("in use"),
                "{msg}"
            );
        }
        other => panic!("second VM on a locked image: {other:?}"),
    }
    let reason = vmm.start().expect("start").wait();
    let out = console.text();
    assert_eq!(reason, StopReason::GuestReset, "console:\n{out}");
    assert!(
        out.contains("virtio-mmio @ 0xd0000000: magic ok, version 2, device id 2"),
        "console:\n{out}"
    );
}

/// An ELF64 image with one loadable segment at 1 MiB holding `code`.
fn elf_image(code: &[u8]) -> Vec<u8> {
    const LOAD: u64 = 0x10_0000;
    const HEADERS: u64 = 64 + 56;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&LOAD.to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&7u32.to_le_bytes()); // RWX
    for v in [
        HEADERS,
        LOAD,
        LOAD,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}

fn run_spinning_guest_controls(executor: ExecutorKind) {
    if !test_prerequisites::kvm_available() {
        return;
    }
    // out 0x80, al ; jmp back — every iteration is a port-I/O exit.
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("spin.elf");
    std::fs::write(&kernel, elf_image(&[0xe6, 0x80, 0xeb, 0xfc])).unwrap();
    let config = VmConfig {
        vcpus: 2,
        memory_mib: 32,
        kernel: Some(kernel),
        ..VmConfig::default()
    };
    let running = VmmBuilder::new(config)
        .executor(executor)
        .build()
        .unwrap()
        .start()
        .unwrap();
    let control = running.control();
    let deadline = Instant::now() + Duration::from_mins(1);
    while control.exit_counts()[0] < 50 {
        assert!(
            Instant::now() < deadline,
            "the guest never exited to the VMM"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    control.pause().unwrap();
    assert_eq!(control.state(), RunState::Paused);
    let frozen = control.exit_counts();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(control.exit_counts(), frozen, "a paused guest does not run");
    control.resume().unwrap();
    while control.exit_counts()[0] <= frozen[0] {
        assert!(Instant::now() < deadline, "the guest did not resume");
        std::thread::sleep(Duration::from_millis(5));
    }
    control.stop();
    assert_eq!(running.wait(), StopReason::Requested);
    assert_eq!(control.state(), RunState::Stopped);
}

#[test]
fn pause_resume_stop_spinning_guest_sync() {
    run_spinning_guest_controls(ExecutorKind::Sync);
}

#[test]
fn pause_resume_stop_spinning_guest_async() {
    run_spinning_guest_controls(ExecutorKind::Async);
}

#[test]
fn an_instruction_limit_is_refused_on_kvm() {
    if !test_prerequisites::kvm_available() {
        return;
    }
    let err = VmmBuilder::new(VmConfig::default())
        .instruction_limit(1000)
        .build()
        .expect_err("KVM does not count instructions");
    assert!(
        matches!(&err, VmmError::InstructionLimit { engine } if engine == "KVM"),
        "{err}"
    );
}
