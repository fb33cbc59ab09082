//! The writer's own thread for background flushes: one batch at a time
//! in, one [`Written`] out, in order.

use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use crate::writer::{Batch, Files, Written};
use crate::ArchiveError;

pub(crate) struct Flusher {
    jobs: Option<mpsc::Sender<Batch>>,
    /// In a mutex only so that the writer stays `Sync` (async callers hold it across
    /// awaits); one caller at a time ever reads it.
    done: Mutex<mpsc::Receiver<Written>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(
        files: Files,
        on_flushed: Box<dyn Fn() + Send>,
    ) -> Result<Self, ArchiveError> {
        let (jobs, job_rx) = mpsc::channel::<Batch>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("archive-flush".into())
            .spawn(move || {
                for batch in job_rx {
                    if done_tx.send(files.write(batch)).is_err() {
                        break;
                    }
                    on_flushed();
                }
            })
            .map_err(|_| ArchiveError::FlushThread)?;
        Ok(Self {
            jobs: Some(jobs),
            done: Mutex::new(done),
            thread: Some(thread),
        })
    }

    /// Hands a batch to the thread; gives it back if the thread is gone.
    pub(crate) fn submit(&self, batch: Batch) -> Result<(), Batch> {
        match &self.jobs {
            Some(jobs) => jobs.send(batch).map_err(|e| e.0),
            None => Err(batch),
        }
    }

    /// The next finished flush: `None` if it is still running and `wait`
    /// is false.
    pub(crate) fn finished(&self, wait: bool) -> Result<Option<Written>, ArchiveError> {
        let done = self.done.lock().map_err(|_| ArchiveError::FlushThread)?;
        let next = if wait {
            done.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
        } else {
            done.try_recv()
        };
        match next {
            Ok(w) => Ok(Some(w)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(ArchiveError::FlushThread),
        }
    }
}

impl Drop for Flusher {
    /// Lets a flush under way finish, so that no half-written batch is left
    /// by a writer that is simply dropped.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
