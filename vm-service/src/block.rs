//! virtio-blk drives for a VM: opening and locking their images, MMIO
//! attachment, the slot order that makes the root drive `/dev/vda`, and the
//! `root=` kernel parameter.
//!
//! A queue notify from the guest only wakes the VM's `blk-io` thread
//! ([`crate::poller`]), which processes the requests and raises the
//! completion interrupt; a vCPU never waits on the disk.
//!
//! Slot order: Linux names virtio disks `vda`, `vdb`, ... in probe order, and
//! it probes virtio-mmio devices in the order the ACPI DSDT / device tree
//! lists them, which is slot order. Like Firecracker, the VMM puts the root
//! drive on the first slot, the other drives after it in configuration
//! order, then the NICs, so the root drive is always `/dev/vda`.

use std::sync::{Arc, Mutex};

use vm_accel::EventNotifier;
use vm_core::config::{BlockConfig, DeviceConfig};
use vm_device::interrupt::{CallbackInterrupt, Interrupt};
use vm_device::virtio::block::{BlockDevice, FileBackend};
use vm_device::virtio::mmio::MmioTransport;
use vm_device::virtio::GuestMemory;

use crate::poller::PolledDevice;

/// Opens the image for `config` with its mode and lock and puts a drive behind a transport.
pub(crate) fn attach(
    config: &BlockConfig,
    mem: GuestMemory,
    interrupt: Arc<dyn Interrupt>,
) -> Result<PolledDevice, Box<dyn std::error::Error + Send + Sync>> {
    let backend = FileBackend::open(&config.path_on_host, config.is_read_only)?;
    let mut device = BlockDevice::new(&config.drive_id, Box::new(backend));
    tracing::info!(
        drive = %config.drive_id,
        path = %config.path_on_host.display(),
        sectors = device.capacity_sectors(),
        read_only = device.is_read_only(),
        root = config.is_root_device,
        "virtio-blk drive attached"
    );
    let notifier = Arc::new(EventNotifier::new_nonblocking()?);
    let fire = Arc::clone(&notifier);
    device.set_io_notifier(Arc::new(CallbackInterrupt::new(move || fire.notify())));
    let transport = MmioTransport::new(Box::new(device), mem, interrupt)?;
    Ok(PolledDevice {
        transport: Arc::new(Mutex::new(transport)),
        wake_fd: std::os::fd::AsRawFd::as_raw_fd(notifier.as_event_fd()),
        notifier: Some(notifier),
    })
}

/// The devices in slot order: the root drive, the other drives, then the rest
/// (each group in configuration order).
pub(crate) fn slot_order(devices: &[DeviceConfig]) -> Vec<&DeviceConfig> {
    let rank = |d: &DeviceConfig| match d {
        DeviceConfig::Block(b) if b.is_root_device => 0,
        DeviceConfig::Block(_) => 1,
        DeviceConfig::Net(_) => 2,
    };
    let mut ordered: Vec<&DeviceConfig> = devices.iter().collect();
    ordered.sort_by_key(|d| rank(d)); // stable: configuration order within a group
    ordered
}

/// `cmdline` with `root=/dev/vda rw|ro` for the root drive, if there is one,
/// before any ` -- ` (init's arguments). A `root=` the user gave wins.
pub(crate) fn with_root_param(cmdline: &str, devices: &[DeviceConfig]) -> String {
    let Some(root) = devices.iter().find_map(|d| match d {
        DeviceConfig::Block(b) if b.is_root_device => Some(b),
        _ => None,
    }) else {
        return cmdline.to_string();
    };
    let (params, init_args) = match cmdline.trim().split_once(" -- ") {
        Some((p, rest)) => (p, Some(rest)),
        None => match cmdline.trim().strip_prefix("--") {
            Some(rest) => ("", Some(rest.trim_start())),
            None => (cmdline.trim(), None),
        },
    };
    if params.split_whitespace().any(|p| p.starts_with("root=")) {
        tracing::info!(drive = %root.drive_id, "command line already has root=; left as given");
        return cmdline.to_string();
    }
    // The root drive is on the first virtio slot: see the module docs.
    let mode = if root.is_read_only { "ro" } else { "rw" };
    let param = format!("root=/dev/vda {mode}");
    let params = if params.is_empty() {
        param
    } else {
        format!("{params} {param}")
    };
    match init_args {
        Some(args) => format!("{params} -- {args}"),
        None => params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_core::config::{NetBackendConfig, NetConfig};

    fn drive(id: &str, root: bool, ro: bool) -> DeviceConfig {
        DeviceConfig::Block(BlockConfig {
            drive_id: id.into(),
            path_on_host: format!("/img/{id}").into(),
            is_root_device: root,
            is_read_only: ro,
        })
    }

    fn nic(id: &str) -> DeviceConfig {
        DeviceConfig::Net(NetConfig {
            id: id.into(),
            backend: NetBackendConfig::Virtual { switch: "s".into() },
            mac: None,
        })
    }

    /// A notify only wakes the `blk-io` thread; the request completes there,
    /// with an interrupt, while the notifying thread holds nothing.
    #[test]
    fn requests_complete_on_the_io_thread() {
        use std::time::{Duration, Instant};
        use vm_device::interrupt::CountingInterrupt;
        use vm_device::virtio::block::request_type;
        use vm_device::virtio::guest_driver::GuestDriver;
        use vm_device::virtio::VIRTIO_F_VERSION_1;
        use vm_memory::{Bytes, GuestAddress};

        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0x42u8; 64 << 10]).unwrap();
        let config = BlockConfig {
            drive_id: "d0".into(),
            path_on_host: image.clone(),
            is_root_device: false,
            is_read_only: false,
        };
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = Arc::new(CountingInterrupt::new());
        let drive = attach(&config, mem.clone(), irq.clone()).unwrap();
        let transport = Arc::clone(&drive.transport);
        let _io = crate::poller::spawn("blk-io", vec![drive]).unwrap();
        let mut drv = GuestDriver::new(mem.clone(), GuestAddress(0x1000), 0x8_0000);
        drv.init(&mut *transport.lock().unwrap(), VIRTIO_F_VERSION_1, &[64])
            .unwrap();
        let header = drv.alloc(16, 16).unwrap();
        let data = drv.alloc(512, 512).unwrap();
        let status = drv.alloc(1, 1).unwrap();
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&request_type::IN.to_le_bytes());
        h[8..16].copy_from_slice(&3u64.to_le_bytes());
        mem.write_slice(&h, header).unwrap();
        mem.write_obj(0xffu8, status).unwrap();
        drv.add_chain(
            0,
            &[(header, 16, false), (data, 512, true), (status, 1, true)],
        )
        .unwrap();
        GuestDriver::notify(&mut *transport.lock().unwrap(), 0);
        let start = Instant::now();
        while drv.used_idx(0).unwrap() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the I/O thread never completed the request"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(mem.read_obj::<u8>(status).unwrap(), 0);
        let mut back = [0u8; 512];
        mem.read_slice(&mut back, data).unwrap();
        assert_eq!(back, [0x42; 512]);
        assert!(irq.count() > 0, "completion interrupt");
    }

    #[test]
    fn root_drive_first_then_drives_then_nics() {
        let devices = [
            nic("n0"),
            drive("data", false, false),
            drive("root", true, false),
            drive("logs", false, true),
        ];
        let ids: Vec<&str> = slot_order(&devices).iter().map(|d| d.id()).collect();
        assert_eq!(ids, ["root", "data", "logs", "n0"]);
    }

    #[test]
    fn root_param_goes_before_init_arguments() {
        let rw = [drive("root", true, false)];
        let ro = [drive("root", true, true)];
        assert_eq!(
            with_root_param("console=ttyS0", &rw),
            "console=ttyS0 root=/dev/vda rw"
        );
        assert_eq!(
            with_root_param("console=ttyS0", &ro),
            "console=ttyS0 root=/dev/vda ro"
        );
        assert_eq!(
            with_root_param("console=ttyS0 -- -v", &rw),
            "console=ttyS0 root=/dev/vda rw -- -v"
        );
        assert_eq!(with_root_param("", &rw), "root=/dev/vda rw");
        assert_eq!(with_root_param("-- init", &rw), "root=/dev/vda rw -- init");
        assert_eq!(with_root_param("root=/dev/sda1", &rw), "root=/dev/sda1");
        assert_eq!(
            with_root_param("console=ttyS0", &[drive("d", false, false)]),
            "console=ttyS0"
        );
        // root= among init's arguments is not the kernel's.
        assert_eq!(
            with_root_param("quiet -- root=x", &rw),
            "quiet root=/dev/vda rw -- root=x"
        );
    }
}
