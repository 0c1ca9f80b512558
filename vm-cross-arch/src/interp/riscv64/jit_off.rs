//! The translator where there is no code generator (feature `jit` off, or a
//! host other than x86_64): nothing is translated and the interpreter runs
//! everything.

// The stand-in keeps the translator's methods, which need no state here.
#![allow(clippy::unused_self)]

use super::hart::{Hart, Translated};

/// The translator state of one hart: none.
#[derive(Debug, Default)]
pub struct Jit {
    _none: (),
}

impl Jit {
    /// Never: there is no code generator.
    #[inline(always)]
    pub fn on(&self) -> bool {
        false
    }

    /// Translation cannot be turned on here.
    pub fn set_threshold(&mut self, _hot: Option<u32>) {}

    /// Nothing to drop.
    pub fn flush(&mut self) {}

    /// No blocks.
    pub fn blocks(&self) -> usize {
        0
    }
}

impl Hart {
    /// Never a block: interpret.
    #[inline(always)]
    pub(super) fn run_translated(&mut self, _steps: u32) -> Translated {
        Translated::No
    }

    /// No blocks to start.
    #[inline(always)]
    pub(super) fn ends_block(_op: &super::decode::Op) -> bool {
        false
    }
}
