//! `EventNotifier`: a counter one side signals and the other waits on — an
//! eventfd on Linux (so KVM can use it as irqfd/ioeventfd), a mutex and
//! condition variable elsewhere.

#[cfg(target_os = "linux")]
mod eventfd;
#[cfg(not(target_os = "linux"))]
mod portable;

#[cfg(target_os = "linux")]
pub use eventfd::EventNotifier;
#[cfg(not(target_os = "linux"))]
pub use portable::EventNotifier;

#[cfg(test)]
mod tests {
    use super::EventNotifier;

    #[test]
    fn notifications_accumulate_until_waited_for() {
        let n = EventNotifier::new().unwrap();
        let clone = n.try_clone().unwrap();
        clone.notify().unwrap();
        clone.notify().unwrap();
        assert_eq!(n.wait().unwrap(), 2);
        n.notify().unwrap();
        assert_eq!(clone.wait().unwrap(), 1);
    }
}
