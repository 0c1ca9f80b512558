//! `VmConfig` JSON (as journaled in `created` events) and its validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_core::config::DeviceConfig;
use vm_core::VmConfig;
use vm_service::api::spec::{api_field, VmSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<VmConfig>(data) else {
        return;
    };
    match config.validate() {
        Ok(()) => {
            // A valid config has an API form that converts back to a valid config.
            let spec = VmSpec::from_config(&config);
            let back = spec
                .to_config()
                .expect("API form of a valid config is valid");
            assert_eq!(back.vcpus, config.vcpus);
            // The API form lists the NICs, then the drives.
            let mut devices = config.devices.clone();
            devices.sort_by_key(|d| matches!(d, DeviceConfig::Block(_)));
            assert_eq!(back.devices, devices);
        }
        Err(e) => {
            assert!(!e.field.is_empty());
            let nics = config
                .devices
                .iter()
                .filter(|d| matches!(d, DeviceConfig::Net(_)))
                .count();
            let _ = api_field(&e.field, nics);
        }
    }
});
