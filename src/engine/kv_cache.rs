//! Host-side bookkeeping of the paged KV cache: which blocks are free, which belong to whom, and which
//! hold a cached prompt prefix.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use thiserror::Error;

/// Not enough free blocks.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("KV cache full: {wanted} blocks wanted, {free} free of {total}")]
pub struct CacheFull {
    /// Blocks asked for.
    pub wanted: usize,
    /// Blocks free.
    pub free: usize,
    /// Blocks in the pool.
    pub total: usize,
}

/// A pool of fixed-size KV blocks handed out to sequences, with a prefix cache.
///
/// A block is free, referenced by one or more sequences, or *cached*: unreferenced but still holding
/// the keys and values of a full block of tokens under a key ([`block_keys`]) that chains the block's
/// tokens with everything before it. A new sequence whose prompt starts with cached blocks takes them
/// ([`BlockPool::lookup`]) instead of recomputing them (a shared system prompt). Cached blocks count as
/// free: when the free list is empty the least recently used one is evicted.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    total: usize,
    free: Vec<u32>,
    refs: Vec<u32>,            // [blocks] sequences using each block
    key_of: Vec<Option<u64>>,  // [blocks] prefix key of a cached full block
    by_key: HashMap<u64, u32>, // prefix key -> block
    idle: BTreeMap<u64, u32>,  // unreferenced cached blocks by last use (eviction order)
    idle_since: Vec<u64>,      // [blocks] tick when it went idle
    tick: u64,
}

/// Prefix keys of the full blocks of `tokens`: key `i` hashes block `i`'s tokens with key `i - 1`,
/// so equal keys mean equal token prefixes.
pub fn block_keys(tokens: &[u32], block_size: usize) -> impl Iterator<Item = u64> + '_ {
    tokens.chunks_exact(block_size.max(1)).scan(0u64, |prev, block| {
        let mut h = DefaultHasher::new();
        prev.hash(&mut h);
        block.hash(&mut h);
        *prev = h.finish();
        Some(*prev)
    })
}

impl BlockPool {
    /// A pool of `blocks` blocks of `block_size` positions, all free.
    pub fn new(blocks: usize, block_size: usize) -> Self {
        // Lowest ids on top of the stack, so a fresh sequence gets contiguous blocks.
        BlockPool {
            block_size,
            total: blocks,
            free: (0..blocks as u32).rev().collect(),
            refs: vec![0; blocks],
            key_of: vec![None; blocks],
            by_key: HashMap::new(),
            idle: BTreeMap::new(),
            idle_since: vec![0; blocks],
            tick: 0,
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks needed to hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Blocks available to new work: free ones and unreferenced cached ones.
    pub fn free_blocks(&self) -> usize {
        self.free.len() + self.idle.len()
    }

    /// Blocks in the pool.
    pub fn total_blocks(&self) -> usize {
        self.total
    }

    /// Grows `table` until it covers `positions` positions; all or nothing.
    pub fn ensure(&mut self, table: &mut Vec<u32>, positions: usize) -> Result<(), CacheFull> {
        let need = self.blocks_for(positions).saturating_sub(table.len());
        if need > self.free_blocks() {
            return Err(CacheFull { wanted: need, free: self.free_blocks(), total: self.total });
        }
        for _ in 0..need {
            let b = match self.free.pop() {
                Some(b) => b,
                None => {
                    let (_, b) = self.idle.pop_first().expect("counted in free_blocks");
                    if let Some(key) = self.key_of[b as usize].take() {
                        self.by_key.remove(&key);
                    }
                    b
                }
            };
            self.refs[b as usize] = 1;
            table.push(b);
        }
        Ok(())
    }

    /// Returns a sequence's blocks to the pool (cached ones stay cached until evicted).
    pub fn release(&mut self, table: &mut Vec<u32>) {
        for b in table.drain(..).rev() {
            let r = &mut self.refs[b as usize];
            *r = r.saturating_sub(1);
            if *r == 0 {
                if self.key_of[b as usize].is_some() {
                    self.tick += 1;
                    self.idle_since[b as usize] = self.tick;
                    self.idle.insert(self.tick, b);
                } else {
                    self.free.push(b);
                }
            }
        }
    }

    /// The cached blocks holding the longest prefix of `keys` (in order), now referenced by the caller.
    pub fn lookup(&mut self, keys: impl Iterator<Item = u64>) -> Vec<u32> {
        let mut found = Vec::new();
        for key in keys {
            let Some(&b) = self.by_key.get(&key) else { break };
            if self.refs[b as usize] == 0 {
                self.idle.remove(&self.idle_since[b as usize]);
            }
            self.refs[b as usize] += 1;
            found.push(b);
        }
        found
    }

    /// Records that `block` now holds the full block of tokens with prefix key `key`.
    pub fn register(&mut self, block: u32, key: u64) {
        let b = block as usize;
        if b < self.total && self.key_of[b].is_none() && !self.by_key.contains_key(&key) {
            self.key_of[b] = Some(key);
            self.by_key.insert(key, block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_and_returned() {
        let mut pool = BlockPool::new(4, 16);
        let mut a = Vec::new();
        pool.ensure(&mut a, 17).unwrap();
        assert_eq!(a, vec![0, 1]);
        pool.ensure(&mut a, 32).unwrap();
        assert_eq!(a.len(), 2, "32 positions fit in two blocks");
        let mut b = Vec::new();
        let err = pool.ensure(&mut b, 3 * 16).unwrap_err();
        assert_eq!(err, CacheFull { wanted: 3, free: 2, total: 4 });
        assert!(b.is_empty(), "a failed request takes nothing");
        pool.release(&mut a);
        assert_eq!(pool.free_blocks(), 4);
        pool.ensure(&mut b, 64).unwrap();
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn cached_prefix_blocks_are_shared_then_evicted_last_used_first() {
        let mut pool = BlockPool::new(4, 2);
        let tokens = [1, 2, 3, 4, 5];
        let keys: Vec<u64> = block_keys(&tokens, 2).collect();
        assert_eq!(keys.len(), 2, "only full blocks have keys");
        let mut a = Vec::new();
        pool.ensure(&mut a, 5).unwrap();
        pool.register(a[0], keys[0]);
        pool.register(a[1], keys[1]);
        let mut b = pool.lookup(keys.iter().copied());
        assert_eq!(b, a[..2].to_vec(), "a second sequence shares the cached blocks");
        pool.release(&mut a);
        assert_eq!(pool.free_blocks(), 2, "shared blocks are still in use");
        pool.release(&mut b);
        assert_eq!(pool.free_blocks(), 4, "cached blocks count as free");
        let other: Vec<u64> = block_keys(&[9, 9, 9, 9], 2).collect();
        assert!(pool.lookup(other.iter().copied()).is_empty());
        let mut c = Vec::new();
        pool.ensure(&mut c, 6).unwrap();
        assert_eq!(pool.lookup(keys.iter().copied()).len(), 1, "the older cached block was evicted first");
    }
}
