//! Device models on a PIO/MMIO bus: legacy devices (8250 serial, i8042) and
//! virtio-mmio devices built on `virtio-queue`, including virtio-net with a TAP
//! backend and an in-process virtual switch backend.
//!
//! Every value a guest writes is validated: a bad descriptor puts the device in
//! `DEVICE_NEEDS_RESET`; it never panics the VMM and never touches memory
//! outside the guest's.
