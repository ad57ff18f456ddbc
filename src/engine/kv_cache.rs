//! Host-side bookkeeping of the paged KV cache: which blocks of the pool are free, which belong to whom.

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

/// A pool of fixed-size KV blocks handed out to sequences.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    total: usize,
    free: Vec<u32>,
}

impl BlockPool {
    /// A pool of `blocks` blocks of `block_size` positions, all free.
    pub fn new(blocks: usize, block_size: usize) -> Self {
        // Lowest ids on top of the stack, so a fresh sequence gets contiguous blocks.
        BlockPool { block_size, total: blocks, free: (0..blocks as u32).rev().collect() }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks needed to hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Free blocks.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks in the pool.
    pub fn total_blocks(&self) -> usize {
        self.total
    }

    /// Grows `table` until it covers `positions` positions; all or nothing.
    pub fn ensure(&mut self, table: &mut Vec<u32>, positions: usize) -> Result<(), CacheFull> {
        let need = self.blocks_for(positions).saturating_sub(table.len());
        if need > self.free.len() {
            return Err(CacheFull { wanted: need, free: self.free.len(), total: self.total });
        }
        for _ in 0..need {
            table.push(self.free.pop().expect("checked above"));
        }
        Ok(())
    }

    /// Returns a sequence's blocks to the pool.
    pub fn release(&mut self, table: &mut Vec<u32>) {
        self.free.extend(table.drain(..).rev());
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
}
