//! Which tier runs a hart's code: the interpreter alone, or with hot blocks
//! translated to host code (where the host has a code generator).

/// A hart's execution tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tier {
    /// Everything interpreted.
    Interpret,
    /// Blocks translated once they have run often enough (the default where
    /// the host has a code generator).
    #[default]
    Translate,
    /// Every block translated the first time it runs: for testing the
    /// translator on programs that run each block only a few times.
    TranslateAll,
}

/// Executions of a block head before the `Translate` tier translates it.
pub const HOT: u32 = 16;

impl Tier {
    /// Executions of a block head before it is translated; `None`: never.
    pub fn threshold(self) -> Option<u32> {
        match self {
            Tier::Interpret => None,
            Tier::Translate => Some(HOT),
            Tier::TranslateAll => Some(1),
        }
    }
}
