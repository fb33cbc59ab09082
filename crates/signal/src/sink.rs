//! What the detector produces and where it goes.

/// One detected heartbeat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Beat {
    /// R-peak sample index in the input's own numbering (0 = first sample pushed).
    pub sample: u64,
    /// Height of the beat's peak in the fused, normalised QRS-energy signal
    /// (about 1 for a typical beat of the recent past).
    pub strength: f32,
    /// Found by search-back (a second look at a lower threshold after an
    /// unusually long RR interval) rather than on the first pass.
    pub search_back: bool,
}

/// Signal quality of one segment (one second) of the input.
#[derive(Clone, Debug, PartialEq)]
pub struct QualitySegment {
    /// First input sample of the segment.
    pub start_sample: u64,
    /// One past the last input sample of the segment.
    pub end_sample: u64,
    /// Per lead: QRS-band envelope peak-to-floor ratio of the last few
    /// seconds (a clean ECG lead scores well above 5, a noisy but readable
    /// one 3-4, broadband noise about 1.5, a flat or disconnected lead 0).
    pub lead_snr: Vec<f32>,
    /// Whether at least one lead carried a usable ECG in this segment; when
    /// not, no beats are reported for it rather than invented ones.
    pub usable: bool,
}

/// Receives the detector's results as they are decided.
pub trait DetectionSink {
    fn beat(&mut self, beat: Beat);
    fn quality(&mut self, _segment: QualitySegment) {}
    /// Whether [`DetectionSink::quality`] is worth calling: a sink that
    /// only collects beats spares the detector building quality segments.
    fn wants_quality(&self) -> bool {
        true
    }
}

impl DetectionSink for Vec<Beat> {
    fn beat(&mut self, beat: Beat) {
        self.push(beat);
    }
    fn wants_quality(&self) -> bool {
        false
    }
}

/// Collects both beats and quality segments.
#[derive(Clone, Debug, Default)]
pub struct Collect {
    pub beats: Vec<Beat>,
    pub quality: Vec<QualitySegment>,
}

impl DetectionSink for Collect {
    fn beat(&mut self, beat: Beat) {
        self.beats.push(beat);
    }
    fn quality(&mut self, segment: QualitySegment) {
        self.quality.push(segment);
    }
}
