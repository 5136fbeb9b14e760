//! A task the store runs in the background for as long as it is open (the token index's
//! settling, the base filter's keeper): at most one of each, stopped when the store closes.

use std::sync::Mutex;

use tokio::task::JoinHandle;

/// The slot of one background task.
#[derive(Debug, Default)]
pub struct BackgroundTask(Mutex<Option<JoinHandle<()>>>);

impl BackgroundTask {
    /// Puts `task` in the slot; a task started before it stops.
    pub fn start(&self, task: JoinHandle<()>) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }

    /// Stops the task, if any.
    pub fn stop(&self) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = slot.take() {
            task.abort();
        }
    }
}
