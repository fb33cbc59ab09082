//! What the streaming interpreter keeps of the recording: the samples pushed so far,
//! as millivolts or, for a device's stream, as ADC counts and their gain (half the
//! memory: a visit in flight is the pipeline's largest memory cost), in the blocks the
//! caller handed over, which it may share rather than copy.

use std::borrow::Cow;
use std::sync::Arc;

use crate::TriageError;

/// The samples pushed so far, per lead.
#[derive(Debug)]
pub(crate) enum Recording {
    Mv(Vec<Vec<f32>>),
    /// Read as `f32::from(count) * mv_per_count`, the millivolts a caller holding the
    /// counts computes, so both ways give the same interpretation.
    Counts {
        mv_per_count: f32,
        n_leads: usize,
        /// One vector per lead in each block, blocks in time order.
        blocks: Vec<Arc<[Vec<i16>]>>,
        /// The first sample of each block: a reading finds its window's first block
        /// without walking them all (a device may send chunks of one sample).
        starts: Vec<usize>,
        len: usize,
    },
}

impl Recording {
    pub(crate) fn mv(n_leads: usize, capacity: usize) -> Recording {
        Recording::Mv((0..n_leads).map(|_| Vec::with_capacity(capacity)).collect())
    }

    pub(crate) fn counts(n_leads: usize, mv_per_count: f32) -> Recording {
        Recording::Counts {
            mv_per_count,
            n_leads,
            blocks: Vec::new(),
            starts: Vec::new(),
            len: 0,
        }
    }

    /// Samples per lead.
    pub(crate) fn len(&self) -> usize {
        match self {
            Recording::Mv(leads) => leads.first().map_or(0, Vec::len),
            Recording::Counts { len, .. } => *len,
        }
    }

    /// Appends millivolts (one slice per lead, lengths already checked).
    pub(crate) fn extend_mv(&mut self, chunk: &[&[f32]]) -> Result<(), TriageError> {
        match self {
            Recording::Mv(leads) => {
                for (l, c) in leads.iter_mut().zip(chunk) {
                    l.extend_from_slice(c);
                }
                Ok(())
            }
            Recording::Counts { .. } => Err(TriageError::SampleKind {
                pushed: "millivolts",
                kept: "ADC counts",
            }),
        }
    }

    /// Appends ADC counts (one slice per lead, lengths already checked).
    pub(crate) fn extend_counts(&mut self, chunk: &[&[i16]]) -> Result<(), TriageError> {
        self.extend_block(chunk.iter().map(|c| c.to_vec()).collect())
    }

    /// Appends a block of ADC counts (one vector per lead, lengths already checked),
    /// kept as it is.
    pub(crate) fn extend_block(&mut self, block: Arc<[Vec<i16>]>) -> Result<(), TriageError> {
        match self {
            Recording::Counts {
                blocks,
                starts,
                len,
                ..
            } => {
                let n = block.first().map_or(0, Vec::len);
                if n > 0 {
                    starts.push(*len);
                    *len += n;
                    blocks.push(block);
                }
                Ok(())
            }
            Recording::Mv(_) => Err(TriageError::SampleKind {
                pushed: "ADC counts",
                kept: "millivolts",
            }),
        }
    }

    /// Every lead in millivolts from sample `start` on: borrowed, or converted for this
    /// reading. Only that stretch is converted: the interpreter reads a window or a few
    /// beats, and converting the whole stream at every beat made a long stream's cost
    /// grow with the square of its length.
    pub(crate) fn millivolts_from(&self, start: usize) -> Vec<Cow<'_, [f32]>> {
        match self {
            Recording::Mv(leads) => leads
                .iter()
                .map(|l| Cow::Borrowed(l.get(start..).unwrap_or_default()))
                .collect(),
            Recording::Counts {
                mv_per_count,
                n_leads,
                blocks,
                starts,
                len,
            } => {
                let first = starts.partition_point(|&s| s <= start).saturating_sub(1);
                (0..*n_leads)
                    .map(|p| {
                        let mut lead = Vec::with_capacity(len.saturating_sub(start));
                        for (b, &at) in blocks[first..].iter().zip(&starts[first..]) {
                            let counts = &b[p];
                            let skip = start.saturating_sub(at).min(counts.len());
                            lead.extend(
                                counts[skip..].iter().map(|&c| f32::from(c) * *mv_per_count),
                            );
                        }
                        Cow::Owned(lead)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_the_millivolts_the_caller_computes() {
        let gain = 0.004_88_f32;
        let counts: [&[i16]; 2] = [&[0, 1, -1, i16::MAX], &[i16::MIN, 7, 300, -42]];
        let mut r = Recording::counts(2, gain);
        r.extend_counts(&counts[..]).unwrap();
        r.extend_counts(&[&[5][..], &[-5][..]]).unwrap();
        assert_eq!(r.len(), 5);
        let mv = r.millivolts_from(0);
        assert_eq!(mv[0][3], f32::from(i16::MAX) * gain);
        assert_eq!(mv[1][0], f32::from(i16::MIN) * gain);
        assert_eq!(mv[1][4], -5.0 * gain);
        // From a sample inside the first block, and from the second block on.
        assert_eq!(
            &*r.millivolts_from(3)[0],
            &[f32::from(i16::MAX) * gain, 5.0 * gain]
        );
        assert_eq!(&*r.millivolts_from(4)[1], &[-5.0 * gain]);
        assert!(r.millivolts_from(9)[1].is_empty());
        assert!(matches!(
            r.extend_mv(&[&[0.0][..], &[0.0][..]]),
            Err(TriageError::SampleKind {
                kept: "ADC counts",
                ..
            })
        ));
        // A shared block is kept, not copied.
        let block: Arc<[Vec<i16>]> = Arc::from(vec![vec![9_i16, 8], vec![7, 6]]);
        r.extend_block(block.clone()).unwrap();
        assert_eq!(Arc::strong_count(&block), 2);
        assert_eq!(r.len(), 7);
        assert_eq!(r.millivolts_from(0)[1][6], 6.0 * gain);
        assert_eq!(&*r.millivolts_from(5)[1], &[7.0 * gain, 6.0 * gain]);
        let mut m = Recording::mv(1, 0);
        assert!(matches!(
            m.extend_counts(&[&[1][..]]),
            Err(TriageError::SampleKind {
                kept: "millivolts",
                ..
            })
        ));
        m.extend_mv(&[&[0.25][..]]).unwrap();
        assert!(matches!(m.millivolts_from(0)[0], Cow::Borrowed(&[0.25])));
        assert!(m.millivolts_from(1)[0].is_empty());
    }
}
