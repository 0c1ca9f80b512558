//! Firecracker-mode request bodies, config files and kernel headers: any
//! bytes give a value or an error, never a panic; whatever parses maps to a
//! `VmConfig` or a fault naming a Firecracker field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_service::api::body::parse_json;
use vm_service::firecracker::config_file::ConfigFile;
use vm_service::firecracker::kernel_arch;
use vm_service::firecracker::model::{
    Action, BootSource, Drive, DrivePatch, Logger, MachineConfig, MachineConfigPatch, Metrics,
    NetworkInterface, NetworkInterfacePatch, VmState,
};
use vm_service::firecracker::resources::Resources;

fuzz_target!(|data: &[u8]| {
    let _ = kernel_arch::from_header(data);
    let _ = serde_json::from_slice::<ConfigFile>(data);
    let _ = parse_json::<Action>(data);
    let _ = parse_json::<VmState>(data);
    let _ = parse_json::<Logger>(data);
    let _ = parse_json::<Metrics>(data);
    let _ = parse_json::<DrivePatch>(data);
    let _ = parse_json::<NetworkInterfacePatch>(data).map(|p| p.is_noop());
    let mut res = Resources::default();
    if let Ok(b) = parse_json::<BootSource>(data) {
        res.boot_source = Some(b);
    }
    if let Ok(m) = parse_json::<MachineConfig>(data) {
        let _ = m.check();
        res.machine = m;
    }
    if let Ok(p) = parse_json::<MachineConfigPatch>(data) {
        res.machine = res.machine.patched(&p);
    }
    if let Ok(d) = parse_json::<Drive>(data) {
        let _ = d.check();
        res.drives.push(d);
    }
    if let Ok(n) = parse_json::<NetworkInterface>(data) {
        let _ = n.check();
        res.nets.push(n);
    }
    if let Err(e) = res.vm_config(false) {
        assert!(!e.to_string().is_empty());
    }
});
