//! Every notice this device recorded, the ones a one-shot client has not printed yet, and the
//! ones a live connection reports.

use super::Notice;
use crate::device::State;
use crate::{ClientError, Device};

/// The store's keys for every notice, and for those not taken by a one-shot client yet.
const NOTICES: &str = "notices";
const NOTICES_NEW: &str = "notices_new";
/// The notices kept, newest last.
const NOTICES_KEPT: usize = 200;

impl State {
    /// Records a notice: in the list of all, in the list not yet taken by a one-shot client,
    /// and for the live connection to report.
    pub(crate) fn note(&mut self, notice: Notice) -> Result<(), ClientError> {
        for list in [NOTICES, NOTICES_NEW] {
            let mut notices = self.notice_list(list)?;
            notices.push(notice.clone());
            let excess = notices.len().saturating_sub(NOTICES_KEPT);
            notices.drain(..excess);
            self.store.set(
                list,
                &serde_json::to_string(&notices).expect("notices serialize"),
            )?;
        }
        self.fresh_notices.push(notice);
        Ok(())
    }

    fn notice_list(&self, list: &str) -> Result<Vec<Notice>, ClientError> {
        Ok(self
            .store
            .get(list)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }
}

impl Device {
    /// Every notice this device recorded (the newest 200), oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn notices(&self) -> Result<Vec<Notice>, ClientError> {
        self.lock().await.notice_list(NOTICES)
    }

    /// The notices recorded since the last call (for a one-shot client to print).
    ///
    /// # Errors
    /// The store cannot be read or written.
    pub async fn take_new_notices(&self) -> Result<Vec<Notice>, ClientError> {
        let state = self.lock().await;
        let new = state.notice_list(NOTICES_NEW)?;
        state.store.set(NOTICES_NEW, "[]")?;
        Ok(new)
    }
}
