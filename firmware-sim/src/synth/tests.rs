//! Behaviour of the generator, checked by measuring its output the way a
//! reader would, independently of how it was drawn.

use super::*;

const ALL_CONDITIONS: [Condition; 11] = [
    Condition::Normal,
    Condition::Stemi(StemiLocation::Anterior),
    Condition::Stemi(StemiLocation::Inferior),
    Condition::Stemi(StemiLocation::Lateral),
    Condition::Stemi(StemiLocation::Inferolateral),
    Condition::Stemi(StemiLocation::Anterolateral),
    Condition::Lbbb,
    Condition::Rbbb,
    Condition::Lvh,
    Condition::EarlyRepolarisation,
    Condition::Paced,
];

const PATIENTS: [(Sex, u8); 4] = [
    (Sex::Male, 30),
    (Sex::Male, 65),
    (Sex::Female, 25),
    (Sex::Female, 80),
];

fn spec(condition: Condition, fs_hz: u32, (sex, age_years): (Sex, u8)) -> VisitSpec {
    VisitSpec {
        fs_hz,
        condition,
        sex,
        age_years,
        hr_min_bpm: 50.0,
        hr_max_bpm: 110.0,
        ..VisitSpec::default()
    }
}

fn ms(v: &SyntheticVisit, ms: f32) -> usize {
    (ms * v.fs_hz as f32 / 1000.0).round() as usize
}

/// ST at J minus the PR level, per lead, averaged over beats: the reader's
/// measurement at the truth's fiducial points.
fn measured_st_uv(v: &SyntheticVisit) -> [f32; 12] {
    let (a, b) = (ms(v, 20.0), ms(v, 5.0));
    let mut sum = [0.0f32; 12];
    let mut count = 0;
    for beat in v.truth.beats.iter().filter(|b| b.qrs_on >= a) {
        for (lead, s) in sum.iter_mut().enumerate() {
            let x = &v.samples[lead];
            let pr: f32 = (beat.qrs_on - a..=beat.qrs_on - b)
                .map(|k| f32::from(x[k]))
                .sum::<f32>()
                / (a - b + 1) as f32;
            *s += f32::from(x[beat.j]) - pr;
        }
        count += 1;
    }
    assert!(count >= 5, "too few complete beats: {count}");
    sum.map(|s| s / count as f32 * v.uv_per_lsb)
}

fn contiguous_pairs_meeting(st: &[f32; 12], threshold: fn(Lead) -> f32) -> Vec<(Lead, Lead)> {
    CONTIGUOUS_PAIRS
        .iter()
        .copied()
        .filter(|&(a, b)| st[a.index()] >= threshold(a) && st[b.index()] >= threshold(b))
        .collect()
}

fn strictest(l: Lead) -> f32 {
    if matches!(l, Lead::V2 | Lead::V3) {
        250.0
    } else {
        100.0
    }
}

fn most_lenient(l: Lead) -> f32 {
    if matches!(l, Lead::V2 | Lead::V3) {
        150.0
    } else {
        100.0
    }
}

#[test]
fn same_seed_same_visit_other_seed_other_visit() {
    let s = VisitSpec {
        noise: NoiseSpec {
            baseline_wander_uv: Some(200.0),
            muscle_uv: Some(20.0),
            mains_uv: Some(30.0),
            electrode_motion_uv: Some(500.0),
            ..NoiseSpec::default()
        },
        ..spec(
            Condition::Stemi(StemiLocation::Inferior),
            500,
            (Sex::Male, 60),
        )
    };
    let a = generate(&s, 42).unwrap();
    let b = generate(&s, 42).unwrap();
    let c = generate(&s, 43).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.samples, c.samples);
    assert_eq!(a.samples.len(), 12);
    assert!(a.samples.iter().all(|l| l.len() == 5000));
}

#[test]
fn noise_does_not_change_the_heart() {
    let clean = spec(Condition::Lbbb, 500, (Sex::Female, 70));
    let noisy = VisitSpec {
        noise: NoiseSpec {
            muscle_uv: Some(50.0),
            ..NoiseSpec::default()
        },
        ..clean.clone()
    };
    let (a, b) = (generate(&clean, 7).unwrap(), generate(&noisy, 7).unwrap());
    assert_eq!(a.truth, b.truth);
    assert_ne!(a.samples, b.samples);
}

#[test]
fn einthoven_and_goldberger_hold_to_rounding_even_with_noise() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for seed in 0..40 {
        let mut s = VisitSpec::random(&mut rng, 0.3);
        s.noise.lead_off = None;
        s.noise.clipping_uv = None;
        s.noise.baseline_wander_uv = Some(500.0);
        let v = generate(&s, seed).unwrap();
        let x = |l: Lead, k: usize| i32::from(v.samples[l.index()][k]);
        for k in 0..v.samples[0].len() {
            let (i, ii) = (x(Lead::I, k), x(Lead::II, k));
            // Each lead is rounded on its own: at most one LSB apart.
            assert!((x(Lead::III, k) - (ii - i)).abs() <= 1, "III at {k}");
            assert!((2 * x(Lead::AVR, k) + (i + ii)).abs() <= 2, "aVR at {k}");
            assert!(
                (2 * x(Lead::AVL, k) - (2 * i - ii)).abs() <= 2,
                "aVL at {k}"
            );
            assert!(
                (2 * x(Lead::AVF, k) - (2 * ii - i)).abs() <= 2,
                "aVF at {k}"
            );
        }
    }
}

#[test]
fn r_peaks_sit_at_the_qrs_maximum_of_the_dominant_lead() {
    for (c, condition) in ALL_CONDITIONS.into_iter().enumerate() {
        for fs in [250, 360, 500, 1000] {
            let v = generate(&spec(condition, fs, PATIENTS[c % 4]), c as u64).unwrap();
            // Dominant lead: largest median absolute QRS excursion.
            let dominant = Lead::ALL
                .into_iter()
                .max_by(|&a, &b| {
                    let amp = |l: Lead| {
                        let mut peaks: Vec<i16> = v
                            .truth
                            .beats
                            .iter()
                            .map(|bt| {
                                let x = &v.samples[l.index()][bt.qrs_on..=bt.qrs_off];
                                x.iter().map(|s| s.saturating_abs()).max().unwrap_or(0)
                            })
                            .collect();
                        peaks.sort_unstable();
                        peaks[peaks.len() / 2]
                    };
                    amp(a).cmp(&amp(b))
                })
                .unwrap();
            let x = &v.samples[dominant.index()];
            let skip = ms(&v, 4.0) + 1; // past a pacing stimulus
            for bt in &v.truth.beats {
                let from = if v.truth.pace_spikes.contains(&bt.qrs_on) {
                    bt.qrs_on + skip
                } else {
                    bt.qrs_on
                };
                let peak = (from..=bt.qrs_off)
                    .map(|k| x[k].saturating_abs())
                    .max()
                    .unwrap();
                assert!(
                    x[bt.r_peak].saturating_abs() + 2 >= peak,
                    "{condition:?} {fs} Hz: R at {} is {} but the QRS reaches {peak} in {dominant:?}",
                    bt.r_peak,
                    x[bt.r_peak]
                );
                assert!(bt.qrs_on < bt.r_peak && bt.r_peak < bt.qrs_off && bt.qrs_off < bt.t_end);
            }
            let r: Vec<usize> = v.truth.beats.iter().map(|b| b.r_peak).collect();
            assert!(r.iter().all(|p| v.truth.r_peaks.contains(p)));
        }
    }
}

#[test]
fn heart_rate_stays_within_the_spec() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for seed in 0..60 {
        let lo: f32 = rng.random_range(50.0..100.0);
        let hi = lo + rng.random_range(0.0..10.0);
        let condition = ALL_CONDITIONS[seed as usize % ALL_CONDITIONS.len()];
        let s = VisitSpec {
            hr_min_bpm: lo,
            hr_max_bpm: hi,
            ..spec(condition, 500, PATIENTS[0])
        };
        let v = generate(&s, seed).unwrap();
        let r = &v.truth.r_peaks;
        let mean_bpm = 60.0 * 500.0 * (r.len() - 1) as f32 / (r[r.len() - 1] - r[0]) as f32;
        assert!(
            mean_bpm >= lo * 0.96 && mean_bpm <= hi * 1.04,
            "{condition:?}: mean {mean_bpm} bpm outside {lo}..{hi}"
        );
        assert!((v.truth.heart_rate_bpm - mean_bpm).abs() < 0.01);
        for w in r.windows(2) {
            let bpm = 60.0 * 500.0 / (w[1] - w[0]) as f32;
            assert!(
                bpm >= lo * 0.85 && bpm <= hi * 1.15,
                "{condition:?}: beat at {bpm} bpm"
            );
        }
    }
}

#[test]
fn sinus_rhythm_varies_with_breathing_but_pacing_does_not() {
    let rr = |v: &SyntheticVisit| -> Vec<f32> {
        v.truth
            .r_peaks
            .windows(2)
            .map(|w| (w[1] - w[0]) as f32)
            .collect()
    };
    let sd = |x: &[f32]| {
        let m = x.iter().sum::<f32>() / x.len() as f32;
        (x.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / x.len() as f32).sqrt()
    };
    let young = VisitSpec {
        duration_s: 60.0,
        ..spec(Condition::Normal, 500, (Sex::Female, 25))
    };
    let paced = VisitSpec {
        duration_s: 60.0,
        ..spec(Condition::Paced, 500, (Sex::Female, 80))
    };
    let sinus_sd_ms = sd(&rr(&generate(&young, 5).unwrap())) * 2.0;
    let paced_sd_ms = sd(&rr(&generate(&paced, 5).unwrap())) * 2.0;
    assert!(sinus_sd_ms > 15.0, "sinus SDNN {sinus_sd_ms} ms");
    assert!(paced_sd_ms < 3.0, "paced SDNN {paced_sd_ms} ms");
}

#[test]
fn stemi_meets_the_fourth_udmi_in_contiguous_leads_of_each_territory() {
    for loc in [
        StemiLocation::Anterior,
        StemiLocation::Inferior,
        StemiLocation::Lateral,
        StemiLocation::Inferolateral,
        StemiLocation::Anterolateral,
    ] {
        for (p, patient) in PATIENTS.into_iter().enumerate() {
            for fs in [250, 360, 500, 1000] {
                for seed in 0..4u64 {
                    let v = generate(
                        &spec(Condition::Stemi(loc), fs, patient),
                        seed * 31 + p as u64,
                    )
                    .unwrap();
                    let st = measured_st_uv(&v);
                    for &territory in loc.territories() {
                        let pairs: Vec<_> = contiguous_pairs_meeting(&st, strictest)
                            .into_iter()
                            .filter(|(a, b)| {
                                territory.leads().contains(a) && territory.leads().contains(b)
                            })
                            .collect();
                        assert!(
                            !pairs.is_empty(),
                            "{loc:?} {territory:?} {fs} Hz seed {seed}: ST {st:?}"
                        );
                    }
                    for (m, t) in st.iter().zip(v.truth.st_j_uv) {
                        assert!((m - t).abs() < 3.0, "truth ST {t} vs measured {m}");
                    }
                    assert!(v.truth.stemi && v.truth.stemi_criteria_met);
                    assert_eq!(v.truth.territories, loc.territories());
                    // Reciprocal depression on the opposite wall.
                    let recip = |l: Lead| st[l.index()];
                    match loc {
                        StemiLocation::Inferior => assert!(recip(Lead::AVL) < -50.0, "aVL {st:?}"),
                        StemiLocation::Anterior => {
                            assert!(
                                recip(Lead::III) < -20.0 && recip(Lead::AVF) < 0.0,
                                "III {st:?}"
                            )
                        }
                        StemiLocation::Lateral => assert!(recip(Lead::III) < -50.0, "III {st:?}"),
                        _ => {}
                    }
                }
            }
        }
    }
}

#[test]
fn normal_and_mimics_never_meet_the_criteria() {
    for condition in ALL_CONDITIONS.into_iter().filter(|c| !c.is_stemi()) {
        for (p, patient) in PATIENTS.into_iter().enumerate() {
            for fs in [250, 500, 1000] {
                for seed in 0..6u64 {
                    let v = generate(&spec(condition, fs, patient), seed * 17 + p as u64).unwrap();
                    let st = measured_st_uv(&v);
                    let pairs = contiguous_pairs_meeting(&st, most_lenient);
                    assert!(
                        pairs.is_empty(),
                        "{condition:?} {fs} Hz seed {seed}: {pairs:?} ST {st:?}"
                    );
                    assert!(!v.truth.stemi && !v.truth.stemi_criteria_met);
                }
            }
        }
    }
}

#[test]
fn early_repolarisation_elevates_the_anterior_st_a_little() {
    for seed in 0..10 {
        let v = generate(
            &spec(Condition::EarlyRepolarisation, 500, (Sex::Male, 28)),
            seed,
        )
        .unwrap();
        let st = measured_st_uv(&v);
        let top = [Lead::V2, Lead::V3, Lead::V4]
            .map(|l| st[l.index()])
            .into_iter()
            .fold(f32::MIN, f32::max);
        assert!(top > 50.0 && top < 150.0, "ER V2-V4 ST {st:?}");
    }
}

/// QRS duration measured from the signal: the stretch around R where the
/// 12-lead spatial velocity exceeds 8 % of its QRS peak (the slopes of ST
/// and T stay below that).
fn measured_qrs_ms(v: &SyntheticVisit, bt: &BeatTruth) -> f32 {
    let dt_ms = 1000.0 / v.fs_hz as f32;
    let speed = |k: usize| -> f32 {
        v.samples
            .iter()
            .map(|x| {
                let d = f32::from(x[k + 1]) - f32::from(x[k - 1]);
                (d / (2.0 * dt_ms)).powi(2)
            })
            .sum::<f32>()
            .sqrt()
    };
    let window = bt.r_peak - ms(v, 100.0)..=bt.r_peak + ms(v, 100.0);
    let peak = window.clone().map(speed).fold(0.0, f32::max);
    let floor = 0.08 * peak;
    // Walk out from R, bridging the slow instants at peaks and notches.
    let gap = ms(v, 8.0).max(2);
    let mut on = bt.r_peak;
    while (1..=gap).any(|g| speed(on - g) > floor) {
        on -= 1;
    }
    let mut off = bt.r_peak;
    while (1..=gap).any(|g| speed(off + g) > floor) {
        off += 1;
    }
    (off - on) as f32 * dt_ms
}

#[test]
fn bundle_branch_blocks_are_wide_and_normal_is_not() {
    for (condition, min_ms, max_ms) in [
        (Condition::Lbbb, 120.0, 200.0),
        (Condition::Rbbb, 120.0, 180.0),
        (Condition::Normal, 60.0, 115.0),
    ] {
        for (p, patient) in PATIENTS.into_iter().enumerate() {
            let v = generate(&spec(condition, 500, patient), 100 + p as u64).unwrap();
            for bt in v.truth.beats.iter().filter(|b| b.r_peak > 100) {
                let truth_ms = (bt.qrs_off - bt.qrs_on) as f32 * 2.0;
                let seen_ms = measured_qrs_ms(&v, bt);
                assert!(
                    (min_ms..=max_ms).contains(&truth_ms) && (truth_ms - seen_ms).abs() <= 20.0,
                    "{condition:?}: truth {truth_ms} ms, measured {seen_ms} ms"
                );
            }
        }
    }
}

#[test]
fn bundle_branch_block_morphology() {
    for seed in 0..6 {
        let lbbb = generate(&spec(Condition::Lbbb, 500, PATIENTS[seed % 4]), seed as u64).unwrap();
        let rbbb = generate(&spec(Condition::Rbbb, 500, PATIENTS[seed % 4]), seed as u64).unwrap();
        for bt in &lbbb.truth.beats {
            let v1 = &lbbb.samples[Lead::V1.index()][bt.qrs_on..=bt.qrs_off];
            let i = &lbbb.samples[Lead::I.index()][bt.qrs_on..=bt.qrs_off];
            // QS in V1: barely any positive wave; broad positive R in I.
            assert!(*v1.iter().max().unwrap() < 150 && *v1.iter().min().unwrap() < -600);
            assert!(*i.iter().max().unwrap() > 300 && *i.iter().min().unwrap() > -100);
        }
        for bt in &rbbb.truth.beats {
            let v1 = &rbbb.samples[Lead::V1.index()][bt.qrs_on..=bt.qrs_off];
            let i = &rbbb.samples[Lead::I.index()][bt.qrs_on..=bt.qrs_off];
            let half = v1.len() / 2;
            // rSR': a negative S, then a terminal positive R' larger than r.
            let r_prime = *v1[half..].iter().max().unwrap();
            let s = *v1.iter().min().unwrap();
            assert!(r_prime > 250 && s < -100, "V1 R' {r_prime} S {s}");
            // Wide terminal S in I.
            assert!(*i[half..].iter().min().unwrap() < -100);
        }
    }
}

/// Mean over the visit's beats of the largest (`up`) or the deepest QRS deflection in
/// `lead`, in uV (positive either way).
fn qrs_extreme_uv(v: &SyntheticVisit, lead: Lead, up: bool) -> f32 {
    let mut sum = 0.0;
    for bt in &v.truth.beats {
        let qrs = &v.samples[lead.index()][bt.qrs_on..=bt.qrs_off];
        sum += if up {
            f32::from(*qrs.iter().max().unwrap())
        } else {
            -f32::from(*qrs.iter().min().unwrap())
        };
    }
    sum / v.truth.beats.len() as f32
}

#[test]
fn lvh_meets_sokolow_lyon() {
    for (p, patient) in PATIENTS.into_iter().enumerate() {
        for seed in 0..5 {
            let v = generate(&spec(Condition::Lvh, 500, patient), seed * 7 + p as u64).unwrap();
            let sokolow = qrs_extreme_uv(&v, Lead::V1, false) + qrs_extreme_uv(&v, Lead::V5, true);
            assert!(sokolow >= 3500.0, "Sokolow-Lyon {sokolow} uV");
            // Strain: ST down in V5-V6.
            let st = measured_st_uv(&v);
            assert!(
                st[Lead::V5.index()] < -30.0 || st[Lead::V6.index()] < -30.0,
                "{st:?}"
            );
        }
    }
}

/// Adults' precordial voltages (normal limits of Rijnbeek et al. 2014 and Macfarlane:
/// S in V2 around 1-2 mV, R in V4 around 1-2 mV): a normal beat as small as half that
/// reads as a small heart to any rule that weighs voltage, such as the 4-variable
/// LAD-occlusion formula.
#[test]
fn normal_precordial_voltages_are_adult_sized() {
    for (p, patient) in PATIENTS.into_iter().enumerate() {
        for seed in 0..4 {
            let v = generate(&spec(Condition::Normal, 500, patient), seed * 5 + p as u64).unwrap();
            let v2 = qrs_extreme_uv(&v, Lead::V2, true) + qrs_extreme_uv(&v, Lead::V2, false);
            let r_v4 = qrs_extreme_uv(&v, Lead::V4, true);
            let sokolow = qrs_extreme_uv(&v, Lead::V1, false) + qrs_extreme_uv(&v, Lead::V5, true);
            assert!(
                (800.0..=3500.0).contains(&v2),
                "{patient:?}: V2 QRS {v2} uV"
            );
            assert!(
                (800.0..=2600.0).contains(&r_v4),
                "{patient:?}: R in V4 {r_v4} uV"
            );
            assert!(sokolow < 4500.0, "{patient:?}: Sokolow-Lyon {sokolow} uV");
        }
    }
}

#[test]
fn paced_beats_start_with_a_stimulus() {
    for fs in [250, 360, 500, 1000] {
        let v = generate(&spec(Condition::Paced, fs, PATIENTS[3]), 9).unwrap();
        assert!(v.truth.pace_spikes.len().abs_diff(v.truth.r_peaks.len()) <= 1);
        assert!(v.truth.pace_spikes.len() >= 9);
        for bt in &v.truth.beats {
            assert!(v.truth.pace_spikes.contains(&bt.qrs_on));
            // A step of hundreds of uV within one sample in some lead.
            let jump = v
                .samples
                .iter()
                .map(|x| (i32::from(x[bt.qrs_on]) - i32::from(x[bt.qrs_on - 1])).abs())
                .max()
                .unwrap();
            assert!(jump > 300, "stimulus step {jump} uV");
            assert!((bt.qrs_off - bt.qrs_on) as f32 * 1000.0 / fs as f32 >= 120.0);
        }
    }
}

#[test]
fn samples_never_wrap_and_clip_only_when_asked() {
    let loud = NoiseSpec {
        baseline_wander_uv: Some(MAX_WANDER_UV),
        muscle_uv: Some(MAX_MUSCLE_RMS_UV),
        mains_uv: Some(MAX_MAINS_UV),
        electrode_motion_uv: Some(MAX_MOTION_UV),
        ..NoiseSpec::default()
    };
    for condition in ALL_CONDITIONS {
        for seed in 0..3 {
            let s = VisitSpec {
                noise: loud.clone(),
                ..spec(condition, 500, PATIENTS[0])
            };
            let v = generate(&s, seed).unwrap();
            for x in &v.samples {
                assert!(
                    x.iter().all(|&s| s > i16::MIN && s < i16::MAX),
                    "{condition:?} hit the rail"
                );
                // No wrap-around: a jump of more than 10 mV between samples
                // would be an overflow.
                assert!(x
                    .windows(2)
                    .all(|w| (i32::from(w[1]) - i32::from(w[0])).abs() < 10_000));
            }
            let clipped = VisitSpec {
                noise: NoiseSpec {
                    clipping_uv: Some(2000.0),
                    ..loud.clone()
                },
                ..s.clone()
            };
            let c = generate(&clipped, seed).unwrap();
            assert!(c.samples.iter().flatten().all(|&s| s.abs() <= 2000));
            assert!(c.samples.iter().flatten().any(|&s| s.abs() == 2000));
        }
    }
}

#[test]
fn lead_off_flattens_only_that_lead() {
    for (level, value) in [(LeadOffLevel::Zero, 0i16), (LeadOffLevel::Rail, i16::MAX)] {
        let s = VisitSpec {
            noise: NoiseSpec {
                baseline_wander_uv: Some(100.0),
                lead_off: Some(LeadOff {
                    lead: Lead::V4,
                    level,
                    from_s: 4.0,
                }),
                ..NoiseSpec::default()
            },
            ..VisitSpec::default()
        };
        let v = generate(&s, 11).unwrap();
        let v4 = &v.samples[Lead::V4.index()];
        assert!(v4[2000..].iter().all(|&x| x == value));
        assert!(v4[..2000].iter().any(|&x| x != value));
        assert!(v.samples[Lead::V3.index()][2000..]
            .iter()
            .any(|&x| x != value));
    }
}

#[test]
fn noise_sources_show_up_where_expected() {
    // Mains: a 50 Hz tone of about the configured size in lead I.
    let base = spec(Condition::Normal, 500, PATIENTS[1]);
    let clean = generate(&base, 2).unwrap();
    let mains = generate(
        &VisitSpec {
            noise: NoiseSpec {
                mains_uv: Some(100.0),
                ..NoiseSpec::default()
            },
            ..base.clone()
        },
        2,
    )
    .unwrap();
    let diff: Vec<f32> = clean.samples[0]
        .iter()
        .zip(&mains.samples[0])
        .map(|(a, b)| f32::from(*b) - f32::from(*a))
        .collect();
    let (mut re, mut im) = (0.0f32, 0.0f32);
    for (k, d) in diff.iter().enumerate() {
        let ph = std::f32::consts::TAU * 50.0 * k as f32 / 500.0;
        re += d * ph.cos();
        im += d * ph.sin();
    }
    let amp_50 = 2.0 * (re * re + im * im).sqrt() / diff.len() as f32;
    assert!(amp_50 > 5.0 && amp_50 < 200.0, "50 Hz amplitude {amp_50}");
    // Muscle noise: high-frequency energy, zero mean.
    let emg = generate(
        &VisitSpec {
            noise: NoiseSpec {
                muscle_uv: Some(50.0),
                ..NoiseSpec::default()
            },
            ..base.clone()
        },
        2,
    )
    .unwrap();
    let d: Vec<f32> = clean.samples[1]
        .iter()
        .zip(&emg.samples[1])
        .map(|(a, b)| f32::from(*b - *a))
        .collect();
    let rms = (d.iter().map(|x| x * x).sum::<f32>() / d.len() as f32).sqrt();
    let mean = d.iter().sum::<f32>() / d.len() as f32;
    assert!(
        rms > 10.0 && rms < 150.0 && mean.abs() < 5.0,
        "EMG rms {rms} mean {mean}"
    );
}

#[test]
fn bad_specs_are_rejected_by_name() {
    let ok = VisitSpec::default();
    let bad = |f: fn(&mut VisitSpec)| {
        let mut s = ok.clone();
        f(&mut s);
        generate(&s, 0).unwrap_err()
    };
    assert_eq!(bad(|s| s.fs_hz = 50), SynthError::SampleRate(50));
    assert!(matches!(
        bad(|s| s.duration_s = f32::NAN),
        SynthError::Duration(_)
    ));
    assert!(matches!(
        bad(|s| s.hr_min_bpm = 120.0),
        SynthError::HeartRate { .. }
    ));
    assert!(matches!(
        bad(|s| s.noise.mains_uv = Some(-1.0)),
        SynthError::NoiseAmplitude { noise: "mains", .. }
    ));
    assert!(matches!(
        bad(|s| s.noise.clipping_uv = Some(10.0)),
        SynthError::ClipLimit(_)
    ));
    let e = bad(|s| s.noise.electrode_motion_uv = Some(1e6));
    assert!(e.to_string().contains("electrode motion"));
}

#[test]
fn random_case_mix_respects_the_stemi_fraction() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let specs: Vec<_> = (0..4000)
        .map(|_| VisitSpec::random(&mut rng, 0.1))
        .collect();
    let stemi = specs.iter().filter(|s| s.condition.is_stemi()).count() as f32 / 4000.0;
    let normal = specs
        .iter()
        .filter(|s| s.condition == Condition::Normal)
        .count() as f32
        / 4000.0;
    assert!((stemi - 0.1).abs() < 0.02, "STEMI fraction {stemi}");
    assert!(normal > 0.5, "normal fraction {normal}");
    for c in ALL_CONDITIONS {
        assert!(specs.iter().any(|s| s.condition == c), "{c:?} never drawn");
    }
    assert!(specs.iter().take(200).all(|s| generate(s, 1).is_ok()));
    assert!((0..500).all(|_| !VisitSpec::random(&mut rng, f64::NAN).condition.is_stemi()));
    assert!((0..50).all(|_| VisitSpec::random(&mut rng, 1.0).condition.is_stemi()));
}

/// `cargo test -p firmware-sim --release -- --ignored --nocapture synth_speed`
#[test]
#[ignore]
fn synth_speed() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let specs: Vec<_> = (0..2000)
        .map(|_| VisitSpec::random(&mut rng, 0.1))
        .collect();
    for (label, noise) in [("case-mix noise", true), ("no noise", false)] {
        let start = std::time::Instant::now();
        for (i, s) in specs.iter().enumerate() {
            let mut s = s.clone();
            if !noise {
                s.noise = NoiseSpec::default();
            }
            std::hint::black_box(generate(&s, i as u64).unwrap());
        }
        let per_visit = start.elapsed() / specs.len() as u32;
        println!("{label}: {per_visit:?} per 10 s 12-lead 500 Hz visit");
    }
}
