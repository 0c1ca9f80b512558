//! The block cache: translated blocks found by guest address, counted until
//! hot, and dropped when the decoded page they came from changes.
//! Guest-independent: a front end names a block by its virtual pc, its
//! physical address and a page token (the decoded-page slot and that slot's
//! generation), and keeps whatever the code points at in `D`.
//!
//! A direct-mapped table (one probe per lookup, no allocation) in front of a
//! map of every head translated so far, so a head evicted from the table by
//! another is found again instead of being counted and translated anew (a
//! Linux boot's hot code is far larger than the table: translating again on
//! every conflict filled the code arena over and over and made the boot
//! slower than interpreting it). Code is never freed while it may run: a
//! stale entry is only skipped, and memory comes back when the owner clears
//! everything.

use std::collections::HashMap;

/// Table entries (a power of two).
const ENTRIES: usize = 8192;
/// Marks an entry whose head cannot start a block.
const NO_BLOCK: u32 = u32::MAX;
/// Translated heads kept before the owner should start over (bounds the
/// map, which also remembers heads of pages decoded again since).
const MAX_HEADS: usize = 1 << 18;

/// Counts of heads evicted before they were hot kept before starting over.
const MAX_WARM: usize = 1 << 16;

/// Where a block came from: its page token at translation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Guest virtual address of the first instruction.
    pub vpc: u64,
    /// Its guest physical address.
    pub pa: u64,
    /// Decoded-page slot.
    pub slot: u32,
    /// Generation of that slot.
    pub generation: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Key,
    hits: u32,
    block: u32,
}

const EMPTY: Entry = Entry {
    key: Key {
        vpc: u64::MAX,
        pa: u64::MAX,
        slot: u32::MAX,
        generation: 0,
    },
    hits: 0,
    block: NO_BLOCK,
};

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A translated block, by index (see [`BlockCache::block`]).
    Block(u32),
    /// Not hot yet, or known not to start a block: interpret.
    Cold,
    /// Hot and not translated: translate it and [`insert`](BlockCache::insert).
    Translate,
}

/// One translated block.
#[derive(Debug)]
pub struct Block<D> {
    /// Entry point (host address).
    pub code: usize,
    /// Guest instructions it retires when it runs to its end.
    pub len: u32,
    /// What the code refers to, kept alive as long as the block.
    keep: D,
}

impl<D> Block<D> {
    /// A block at host address `code` of `len` guest instructions, whose
    /// code points into `keep`.
    pub fn new(code: usize, len: u32, keep: D) -> Self {
        Self { code, len, keep }
    }
}

impl<D> Block<D> {
    /// What the code points into.
    pub fn keep(&self) -> &D {
        &self.keep
    }
}

/// Translated blocks of one vCPU.
#[derive(Debug)]
pub struct BlockCache<D> {
    table: Box<[Entry]>,
    /// Every translated head (`NO_BLOCK`: none starts there) since the last clear.
    heads: HashMap<Key, u32>,
    /// Executions of heads evicted from the table before they were hot.
    warm: HashMap<Key, u32>,
    blocks: Vec<Block<D>>,
    /// Executions of a head before it is translated (at least 1).
    hot: u32,
}

impl<D> Default for BlockCache<D> {
    fn default() -> Self {
        Self {
            table: vec![EMPTY; ENTRIES].into_boxed_slice(),
            heads: HashMap::new(),
            warm: HashMap::new(),
            blocks: Vec::new(),
            hot: super::super::tier::HOT,
        }
    }
}

impl<D> BlockCache<D> {
    /// Sets the executions of a head before it is translated.
    pub fn set_threshold(&mut self, hot: u32) {
        self.hot = hot.max(1);
    }

    /// Executions of a head before it is translated.
    pub fn threshold(&self) -> u32 {
        self.hot
    }

    fn index(vpc: u64) -> usize {
        ((vpc >> 1) ^ (vpc >> 14)) as usize & (ENTRIES - 1)
    }

    /// Finds the block for `key`, counting one execution of its head.
    #[inline]
    pub fn lookup(&mut self, key: Key) -> Lookup {
        let e = &mut self.table[Self::index(key.vpc)];
        if e.key != key {
            if let Some(&block) = self.heads.get(&key) {
                // Translated before, evicted from the table since.
                *e = Entry {
                    key,
                    hits: u32::MAX,
                    block,
                };
                return if block == NO_BLOCK {
                    Lookup::Cold
                } else {
                    Lookup::Block(block)
                };
            }
            // Another head, or this head's page changed. A head not yet hot
            // keeps its count when another evicts it: two hot heads sharing
            // an entry would otherwise reset each other forever and never
            // be translated.
            if e.block == NO_BLOCK && e.hits > 0 {
                if self.warm.len() >= MAX_WARM {
                    self.warm.clear();
                }
                self.warm.insert(e.key, e.hits);
            }
            *e = Entry {
                key,
                hits: self.warm.remove(&key).unwrap_or(0),
                block: NO_BLOCK,
            };
        } else if e.block != NO_BLOCK {
            return Lookup::Block(e.block);
        }
        if e.hits < self.hot {
            e.hits += 1;
            if e.hits == self.hot {
                return Lookup::Translate;
            }
        }
        Lookup::Cold
    }

    /// Records the translation of `key` (`None`: no block starts there).
    pub fn insert(&mut self, key: Key, block: Option<Block<D>>) -> Option<u32> {
        let index = block.map(|b| {
            self.blocks.push(b);
            (self.blocks.len() - 1) as u32
        });
        self.heads.insert(key, index.unwrap_or(NO_BLOCK));
        self.table[Self::index(key.vpc)] = Entry {
            key,
            hits: u32::MAX,
            block: index.unwrap_or(NO_BLOCK),
        };
        index
    }

    /// The block translated at `key`, if any (counts no execution).
    pub fn translated(&self, key: Key) -> Option<u32> {
        self.heads.get(&key).copied().filter(|&b| b != NO_BLOCK)
    }

    /// Block number `index`.
    #[inline]
    pub fn block(&self, index: u32) -> &Block<D> {
        &self.blocks[index as usize]
    }

    /// Number of translated blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the owner should [`clear`](Self::clear) before translating more.
    pub fn is_full(&self) -> bool {
        self.heads.len() >= MAX_HEADS
    }

    /// Drops every block (their code memory may be reused afterwards).
    pub fn clear(&mut self) {
        self.table.fill(EMPTY);
        self.heads.clear();
        self.warm.clear();
        self.blocks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::riscv64::tier::HOT;

    fn key(vpc: u64, generation: u32) -> Key {
        Key {
            vpc,
            pa: vpc + 0x1000,
            slot: 3,
            generation,
        }
    }

    #[test]
    fn a_head_turns_hot_then_hits_and_a_new_generation_starts_over() {
        let mut c = BlockCache::<()>::default();
        let k = key(0x8000_0040, 7);
        c.set_threshold(HOT);
        for _ in 1..HOT {
            assert_eq!(c.lookup(k), Lookup::Cold);
        }
        assert_eq!(c.lookup(k), Lookup::Translate);
        let b = Block::new(0, 4, ());
        let i = c.insert(k, Some(b)).unwrap();
        assert_eq!(c.lookup(k), Lookup::Block(i));
        assert_eq!(c.block(i).len, 4);
        // The page was decoded again: the old block is not found.
        assert_eq!(c.lookup(key(0x8000_0040, 8)), Lookup::Cold);
        // The same physical code at another virtual address is another block.
        let mut other = k;
        other.vpc ^= 0x10_0000;
        other.pa = k.pa;
        assert_ne!(c.lookup(other), Lookup::Block(i));
        c.clear();
        assert_eq!(c.len(), 0);
        assert_eq!(c.lookup(k), Lookup::Cold);
    }

    #[test]
    fn a_head_evicted_by_a_conflicting_one_is_found_without_translating_again() {
        let mut c = BlockCache::<()>::default();
        let a = key(0x8000_0040, 0);
        // Same table entry, another head.
        let b = key(0x8000_0040 + (1 << 27), 0);
        assert_eq!(
            BlockCache::<()>::index(a.vpc),
            BlockCache::<()>::index(b.vpc)
        );
        c.set_threshold(1);
        assert_eq!(c.lookup(a), Lookup::Translate);
        let ia = c.insert(a, Some(Block::new(0, 2, ()))).unwrap();
        assert_eq!(c.lookup(b), Lookup::Translate);
        c.insert(b, None);
        assert_eq!(c.lookup(a), Lookup::Block(ia));
        assert_eq!(c.lookup(b), Lookup::Cold, "known not to start a block");
        assert_eq!(c.len(), 1);
        // What chaining asks, counting nothing.
        assert_eq!(c.translated(a), Some(ia));
        assert_eq!(c.translated(b), None);
        assert_eq!(c.translated(key(a.vpc, 1)), None, "another generation");
        // A new generation of the page is not the old block.
        assert_eq!(c.lookup(key(a.vpc, 1)), Lookup::Translate);
    }

    #[test]
    fn two_heads_sharing_an_entry_both_turn_hot() {
        let mut c = BlockCache::<()>::default();
        let a = key(0x8000_0000, 0);
        let b = key(0x4000_0000, 0);
        assert_eq!(
            BlockCache::<()>::index(a.vpc),
            BlockCache::<()>::index(b.vpc)
        );
        c.set_threshold(HOT);
        for _ in 1..HOT {
            assert_eq!(c.lookup(a), Lookup::Cold);
            assert_eq!(c.lookup(b), Lookup::Cold);
        }
        assert_eq!(c.lookup(a), Lookup::Translate);
        assert_eq!(c.lookup(b), Lookup::Translate);
    }

    #[test]
    fn a_head_without_a_block_stays_interpreted() {
        let mut c = BlockCache::<()>::default();
        let k = key(0x8000_0100, 0);
        c.insert(k, None);
        for _ in 0..3 * HOT {
            assert_eq!(c.lookup(k), Lookup::Cold);
        }
    }
}
