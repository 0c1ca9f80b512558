//! Request bodies of `PUT /vms/{id}` and `PUT /vms/{id}/actions`, and VM ids
//! from the path: any bytes give a value or an API error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_service::api::body::parse_json;
use vm_service::api::spec::{parse_vm_spec, VmSpec};
use vm_service::api::ActionRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = parse_vm_spec(data) {
        // Whatever parses and validates survives the round trip through the API form.
        let again = VmSpec::from_config(&config).to_config();
        assert_eq!(again.as_ref(), Ok(&config));
    }
    if let Err(e) = parse_json::<ActionRequest>(data) {
        assert!(e.status.is_client_error());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = vm_core::VmId::new(s);
    }
});
