//! Per-scope slot indexes: how a scope's entries are listed without a scan.
//!
//! Spin's `get_keys` returns every key of a store, every tenant's included, so a
//! listing built on it would cost the whole deployment. Instead each scope keeps
//! a counter that hands out slot numbers with the host's atomic `increment`,
//! and one key per slot naming the entry. Each slot key is written by exactly one
//! writer (the one that got the number), so concurrent additions lose no entry
//! on any Spin backend, and nothing depends on compare-and-swap creating a key
//! (on Spin's SQLite backend that is a plain upsert).
//!
//! A slot is a hint: the owner of the index checks each entry against the
//! record it names (which stores its slot), so a slot left behind by a failed
//! write or a deletion is skipped and an entry is never listed twice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::store::budget::Budget;
use crate::store::kv::{KeyValue, KvError, read_counter};
use crate::tenancy::keys::IndexKeys;

/// Slots examined per page at most. Bounds the cost of one request when the
/// caller's filters match few entries: the page then comes back short, with a cursor.
pub const MAX_SLOTS_PER_PAGE: u64 = 1000;

/// A cursor that does not decode, or belongs to another index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCursor;

pub struct SlotIndex<'a> {
    kv: &'a dyn KeyValue,
    keys: IndexKeys,
}

impl<'a> SlotIndex<'a> {
    pub fn new(kv: &'a dyn KeyValue, keys: IndexKeys) -> Self {
        SlotIndex { kv, keys }
    }

    /// A fresh slot number, never handed out before in this index.
    pub fn allocate(&self) -> Result<u64, KvError> {
        let slot = self.kv.increment(&self.keys.seq(), 1)?;
        Ok(u64::try_from(slot).expect("an index counter only ever grows from 0"))
    }

    pub fn set(&self, slot: u64, entry: &[u8]) -> Result<(), KvError> {
        self.kv.set(&self.keys.slot(slot), entry)
    }

    pub fn get(&self, slot: u64) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.get(&self.keys.slot(slot))
    }

    /// The newest slot handed out so far (0 when none).
    pub fn newest(&self) -> Result<u64, KvError> {
        // `increment(0)` reads the counter the same way on every backend.
        Ok(u64::try_from(self.kv.increment(&self.keys.seq(), 0)?).unwrap_or(0))
    }

    /// [`Self::newest`] without creating the counter where there is none
    /// (`increment(0)` writes a 0 on every Spin backend): what a reader of
    /// an index that may be gone uses, so reading leaves nothing behind.
    pub fn newest_stored(&self) -> Result<u64, KvError> {
        Ok(u64::try_from(read_counter(self.kv, &self.keys.seq())?).unwrap_or(0))
    }

    /// Deletes the counter, once every slot is removed: the index as if it
    /// never existed. A writer allocating meanwhile starts again at 1.
    pub fn forget(&self) -> Result<(), KvError> {
        self.kv.delete(&self.keys.seq())
    }

    pub fn remove(&self, slot: u64) -> Result<(), KvError> {
        self.kv.delete(&self.keys.slot(slot))
    }

    /// Empties the index newest first while `budget` lasts: `each(slot,
    /// entry)` removes what the slot names (its entry, `None` for a slot
    /// already removed) and answers what that cost; then the slot goes and
    /// the counter goes down by one, so a drain cut off (by
    /// its budget or a crash) resumes at the slot it was at, and redoes at
    /// most that one. Returns whether the index is gone, counter and all.
    /// Only for an index nobody adds to any more (a tenant being deleted):
    /// a slot handed out meanwhile could be skipped.
    pub fn drain<E: From<KvError>>(
        &self,
        budget: &mut Budget,
        mut each: impl FnMut(u64, Option<Vec<u8>>) -> Result<usize, E>,
    ) -> Result<bool, E> {
        let mut newest = self.newest_stored()?;
        loop {
            if newest == 0 {
                self.forget()?;
                return Ok(true);
            }
            if budget.spent() {
                return Ok(false);
            }
            budget.examine();
            let entry = self.get(newest)?;
            let live = entry.is_some();
            let cost = each(newest, entry)?;
            budget.spend(cost);
            if live {
                self.remove(newest)?;
            }
            // The counter's new value is the next slot: no read again.
            newest = u64::try_from(self.kv.increment(&self.keys.seq(), -1)?).unwrap_or(0);
        }
    }

    /// Walks the index newest first, from `cursor` or from the newest slot,
    /// calling `take(slot, entry)` for each live slot; `take` answers whether the
    /// entry made it into the page. Stops after `limit` taken entries or
    /// [`MAX_SLOTS_PER_PAGE`] slots, and returns the cursor to continue from
    /// (`None` once the oldest slot was examined).
    pub fn walk<E: From<KvError> + From<InvalidCursor>>(
        &self,
        cursor: Option<&str>,
        limit: usize,
        mut take: impl FnMut(u64, Vec<u8>) -> Result<bool, E>,
    ) -> Result<Option<String>, E> {
        let seq_key = self.keys.seq();
        let start = match cursor {
            Some(cursor) => decode_cursor(cursor, &seq_key)?,
            // `increment(0)` reads the counter the same way on every backend
            // (Redis keeps it as text, SQLite as an i64).
            None => u64::try_from(self.kv.increment(&seq_key, 0)?).unwrap_or(0),
        };
        let stop = start.saturating_sub(MAX_SLOTS_PER_PAGE);
        let (mut slot, mut taken) = (start, 0);
        while slot > stop && taken < limit {
            if let Some(entry) = self.kv.get(&self.keys.slot(slot))?
                && take(slot, entry)?
            {
                taken += 1;
            }
            slot -= 1;
        }
        Ok((slot > 0).then(|| encode_cursor(&seq_key, slot)))
    }
}

const CURSOR_VERSION: u8 = 1;

/// Ties a cursor to one index, so a cursor of one scope is refused in another.
/// Not a secret: the tag only catches cursors used in the wrong place.
fn cursor_tag(seq_key: &str) -> [u8; 8] {
    let digest = Sha256::digest(seq_key.as_bytes());
    digest[..8]
        .try_into()
        .expect("a SHA-256 digest has 32 bytes")
}

fn encode_cursor(seq_key: &str, next_slot: u64) -> String {
    let mut bytes = Vec::with_capacity(17);
    bytes.push(CURSOR_VERSION);
    bytes.extend_from_slice(&cursor_tag(seq_key));
    bytes.extend_from_slice(&next_slot.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_cursor(cursor: &str, seq_key: &str) -> Result<u64, InvalidCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    if bytes.len() != 17 || bytes[0] != CURSOR_VERSION || bytes[1..9] != cursor_tag(seq_key) {
        return Err(InvalidCursor);
    }
    let slot: [u8; 8] = bytes[9..].try_into().expect("length checked above");
    Ok(u64::from_be_bytes(slot))
}
