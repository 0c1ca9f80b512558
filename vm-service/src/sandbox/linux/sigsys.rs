//! Seccomp level 1: a `SIGSYS` handler that names the thread and the syscall
//! on stderr and ends the process. Async-signal-safe: no allocation, no
//! locks, only `prctl`, `write` and `_exit`, which every filter allows.

use super::os_err;
use crate::sandbox::SandboxError;

/// The exit status after a forbidden syscall at level 1 (128 + SIGSYS).
const EXIT_STATUS: i32 = 128 + libc::SIGSYS;
/// Offset of `si_syscall` in `siginfo_t` for SIGSYS (after `si_signo`,
/// `si_errno`, `si_code`, padding, and `si_call_addr`) on 64-bit Linux.
const SI_SYSCALL_OFFSET: usize = 24;

pub(super) fn install_handler() -> Result<(), SandboxError> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action` is initialised and the handler has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(libc::SIGSYS, &raw const action, std::ptr::null_mut()) } != 0 {
        return Err(os_err("installing the SIGSYS handler"));
    }
    Ok(())
}

extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let mut line = [0u8; 128];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    };
    push(b"vm-service: seccomp: thread ");
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the 17-byte buffer.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr(), 0, 0, 0) };
    let end = name.iter().position(|&b| b == 0).unwrap_or(16);
    push(&name[..end]);
    push(b" made forbidden syscall ");
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for
    // SIGSYS from seccomp, si_syscall is the int at SI_SYSCALL_OFFSET.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned()
    };
    let mut digits = [0u8; 12];
    let mut i = digits.len();
    let mut n = nr.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push(&digits[i..]);
    push(b"\n");
    // SAFETY: write and _exit are async-signal-safe; `line[..len]` is initialised.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len);
        libc::_exit(EXIT_STATUS);
    }
}
