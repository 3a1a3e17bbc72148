//! How much work one call of a long job (the retention sweep, an
//! offboarding) may do, so that its cost is bounded whatever it meets and
//! the next call goes on where it stopped.

/// Units of work left: roughly a key-value read or delete each. A call
/// stops only once it has examined something, so every call makes progress.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    examined: bool,
}

impl Budget {
    pub fn new(units: usize) -> Self {
        Budget {
            left: units,
            examined: false,
        }
    }

    pub fn spend(&mut self, units: usize) {
        self.left = self.left.saturating_sub(units);
    }

    /// Spends one unit on examining an entry: the call has made progress.
    pub fn examine(&mut self) {
        self.spend(1);
        self.examined = true;
    }

    /// Whether the call must stop here.
    pub fn spent(&self) -> bool {
        self.left == 0 && self.examined
    }
}
