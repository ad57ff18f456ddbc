//! Sampling tests: parameter validation, exact candidate sets for top-k / top-p / min-p (ties and
//! boundaries), greedy, penalties, seeded reproducibility, the empirical distribution, and stop strings.

use prism::engine::sampling::{
    Sampler, SamplingError, SamplingParams, StopMatcher, TokenCounts, apply_penalties, argmax, candidate_set,
};

fn params(temperature: f32) -> SamplingParams {
    SamplingParams { temperature, seed: Some(1), ..SamplingParams::default() }
}

/// The ids of a candidate set, best first.
fn kept(logits: &[f32], p: &SamplingParams) -> Vec<u32> {
    candidate_set(logits, p).into_iter().map(|(id, _)| id).collect()
}

/// Logits whose softmax (temperature 1) is exactly proportional to `probs`.
fn logits_of(probs: &[f64]) -> Vec<f32> {
    probs.iter().map(|p| p.ln() as f32).collect()
}

// ---------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------

#[test]
fn defaults_are_greedy_and_neutral() {
    let p = SamplingParams::default();
    assert_eq!(p, SamplingParams::greedy());
    assert!(p.is_greedy() && !p.has_penalties());
    assert_eq!((p.top_k, p.top_p, p.min_p, p.repetition_penalty), (0, 1.0, 0.0, 1.0));
    assert!(p.validate().is_ok());
    assert!(Sampler::new(p).is_greedy_without_penalties());
    assert!(!Sampler::new(params(0.7)).is_greedy_without_penalties());
    let penalized = SamplingParams { repetition_penalty: 1.1, ..SamplingParams::default() };
    assert!(!Sampler::new(penalized).is_greedy_without_penalties());
}

#[test]
fn validation_rejects_out_of_range() {
    let base = SamplingParams::default();
    let bad = [
        ("temperature", SamplingParams { temperature: -0.1, ..base.clone() }),
        ("temperature", SamplingParams { temperature: f32::NAN, ..base.clone() }),
        ("temperature", SamplingParams { temperature: f32::INFINITY, ..base.clone() }),
        ("top_p", SamplingParams { top_p: 0.0, ..base.clone() }),
        ("top_p", SamplingParams { top_p: 1.01, ..base.clone() }),
        ("top_p", SamplingParams { top_p: f32::NAN, ..base.clone() }),
        ("min_p", SamplingParams { min_p: -0.01, ..base.clone() }),
        ("min_p", SamplingParams { min_p: 1.5, ..base.clone() }),
        ("min_p", SamplingParams { min_p: f32::NAN, ..base.clone() }),
        ("repetition_penalty", SamplingParams { repetition_penalty: 0.0, ..base.clone() }),
        ("repetition_penalty", SamplingParams { repetition_penalty: -1.0, ..base.clone() }),
        ("repetition_penalty", SamplingParams { repetition_penalty: f32::NAN, ..base.clone() }),
        ("presence_penalty", SamplingParams { presence_penalty: f32::NAN, ..base.clone() }),
        ("frequency_penalty", SamplingParams { frequency_penalty: f32::INFINITY, ..base.clone() }),
    ];
    for (name, p) in bad {
        match p.validate() {
            Err(SamplingError::Invalid { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
        let msg = p.validate().unwrap_err().to_string();
        assert!(msg.contains(name), "{msg}");
    }
    let good = SamplingParams {
        temperature: 1.5,
        top_k: 40,
        top_p: 1.0,
        min_p: 1.0,
        repetition_penalty: 0.5,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        seed: Some(3),
    };
    assert!(good.validate().is_ok());
}

// ---------------------------------------------------------------------------------------------------
// Greedy
// ---------------------------------------------------------------------------------------------------

#[test]
fn greedy_picks_argmax() {
    assert_eq!(argmax(&[0.1, 3.0, -1.0, 2.9]), Some(1));
    assert_eq!(argmax(&[2.0, 5.0, 5.0, 1.0]), Some(1), "first index on ties");
    assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN, 0.5]), Some(1), "NaN never wins");
    assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
    assert_eq!(argmax(&[]), None);
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));

    let mut s = Sampler::new(SamplingParams::greedy());
    let h = TokenCounts::new();
    assert_eq!(s.sample(&mut [1.0, f32::NAN, 7.5, 7.5, -3.0], &h), 2);
    assert_eq!(s.try_sample(&mut [f32::NAN; 4], &h), Err(SamplingError::NoCandidates));
    assert_eq!(s.try_sample(&mut [], &h), Err(SamplingError::NoCandidates));
    assert_eq!(s.sample(&mut [], &h), 0, "no panic on empty logits");
    assert_eq!(candidate_set(&[1.0, 4.0, 4.0], &SamplingParams::greedy()), vec![(1, 1.0)]);
}

// ---------------------------------------------------------------------------------------------------
// Exact candidate sets
// ---------------------------------------------------------------------------------------------------

#[test]
fn top_k_keeps_exactly_the_k_best() {
    let logits = [0.5, 2.0, -1.0, 3.0, 2.5, 0.0, 1.0];
    for k in 1..=7 {
        let p = SamplingParams { top_k: k, ..params(1.0) };
        let expected: Vec<u32> = [3, 4, 1, 6, 0, 5, 2][..k].to_vec();
        assert_eq!(kept(&logits, &p), expected, "k = {k}");
    }
    // k beyond the vocabulary keeps everything.
    assert_eq!(kept(&logits, &SamplingParams { top_k: 100, ..params(1.0) }).len(), 7);
    // Ties at the boundary: the lower ids win.
    let tied = [1.0, 5.0, 3.0, 3.0, 3.0, 0.0];
    assert_eq!(kept(&tied, &SamplingParams { top_k: 3, ..params(1.0) }), vec![1, 2, 3]);
    assert_eq!(kept(&tied, &SamplingParams { top_k: 2, ..params(1.0) }), vec![1, 2]);
    // Probabilities are renormalized over the k kept tokens.
    let c = candidate_set(&[0.0, 0.0, 0.0, -10.0], &SamplingParams { top_k: 2, ..params(1.0) });
    assert_eq!(c.iter().map(|&(id, _)| id).collect::<Vec<_>>(), vec![0, 1]);
    assert!(c.iter().all(|&(_, p)| (p - 0.5).abs() < 1e-6));
}

#[test]
fn top_k_on_a_large_vocabulary() {
    // 128k logits, a pseudo-random permutation of distinct values: top-k is exactly the k largest.
    let n = 128_256u32;
    let logits: Vec<f32> = (0..n).map(|i| ((i as u64 * 7919) % n as u64) as f32 / 1000.0).collect();
    let p = SamplingParams { top_k: 50, ..params(0.8) };
    let mut got = kept(&logits, &p);
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    assert_eq!(got, order[..50].to_vec(), "best first");
    got.sort_unstable();
    let mut expected = order[..50].to_vec();
    expected.sort_unstable();
    assert_eq!(got, expected);
}

#[test]
fn top_p_keeps_the_smallest_nucleus() {
    let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
    let cases = [
        (0.4, vec![0]),
        (0.5, vec![0]), // exactly reached by the first token
        (0.51, vec![0, 1]),
        (0.8, vec![0, 1]), // boundary: 0.5 + 0.3
        (0.81, vec![0, 1, 2]),
        (0.95, vec![0, 1, 2]),
        (0.96, vec![0, 1, 2, 3]),
        (1.0, vec![0, 1, 2, 3]),
        (1e-6, vec![0]), // at least one
    ];
    for (top_p, expected) in cases {
        let p = SamplingParams { top_p, ..params(1.0) };
        assert_eq!(kept(&logits, &p), expected, "top_p = {top_p}");
    }
    // Renormalized probabilities.
    let c = candidate_set(&logits, &SamplingParams { top_p: 0.8, ..params(1.0) });
    assert!((c[0].1 - 0.625).abs() < 1e-5 && (c[1].1 - 0.375).abs() < 1e-5, "{c:?}");
    // Ties: the lower id comes first and is the one kept.
    let tied = logits_of(&[0.2, 0.4, 0.4]);
    assert_eq!(kept(&tied, &SamplingParams { top_p: 0.3, ..params(1.0) }), vec![1]);
    assert_eq!(kept(&tied, &SamplingParams { top_p: 0.5, ..params(1.0) }), vec![1, 2]);
    // The order in the vocabulary does not matter.
    let shuffled = logits_of(&[0.05, 0.15, 0.5, 0.3]);
    assert_eq!(kept(&shuffled, &SamplingParams { top_p: 0.81, ..params(1.0) }), vec![2, 3, 1]);
}

#[test]
fn top_p_applies_after_top_k_and_temperature() {
    let logits = logits_of(&[0.4, 0.3, 0.2, 0.1]);
    // After top-k = 2, the distribution is (4/7, 3/7): top_p 0.5 keeps one token, 0.6 both.
    assert_eq!(kept(&logits, &SamplingParams { top_k: 2, top_p: 0.5, ..params(1.0) }), vec![0]);
    assert_eq!(kept(&logits, &SamplingParams { top_k: 2, top_p: 0.6, ..params(1.0) }), vec![0, 1]);
    // Temperature 0.5 squares the probabilities: (16, 9, 4, 1)/30, so 0.8 needs two tokens (0.833),
    // where temperature 1 needs three (0.4 + 0.3 < 0.8).
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.8, ..params(0.5) }), vec![0, 1]);
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.85, ..params(0.5) }), vec![0, 1, 2]);
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.8, ..params(1.0) }), vec![0, 1, 2]);
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.7, ..params(1.0) }), vec![0, 1]);
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.7, ..params(0.5) }), vec![0, 1]);
    assert_eq!(kept(&logits, &SamplingParams { top_p: 0.5, ..params(0.5) }), vec![0]);
}

#[test]
fn top_p_on_a_large_flat_vocabulary() {
    // Nearly flat over 100k tokens: the nucleus is large, beyond the first sorted prefix.
    let n = 100_000usize;
    let logits: Vec<f32> = (0..n).map(|i| -(i as f32) * 1e-5).collect();
    let p = SamplingParams { top_p: 0.5, ..params(1.0) };
    let got = kept(&logits, &p);
    // Reference: sort all, accumulate.
    let w: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut cum = 0.0;
    let expected = w.iter().position(|&x| {
        cum += x / total;
        cum >= 0.5
    });
    let expected = expected.unwrap() + 1;
    assert!((got.len() as i64 - expected as i64).abs() <= 1, "{} vs {expected}", got.len());
    assert_eq!(got[..10], (0..10).collect::<Vec<u32>>()[..]);
}

#[test]
fn min_p_keeps_tokens_near_the_top() {
    let logits = logits_of(&[0.4, 0.2, 0.1, 0.05, 0.25]);
    let cases = [
        (0.0, vec![0, 4, 1, 2, 3]),
        (0.1, vec![0, 4, 1, 2, 3]),
        (0.125, vec![0, 4, 1, 2, 3]), // boundary: 0.05 = 0.125 · 0.4 is kept
        (0.13, vec![0, 4, 1, 2]),
        (0.25, vec![0, 4, 1, 2]), // boundary: 0.1 = 0.25 · 0.4
        (0.5, vec![0, 4, 1]),     // boundary: 0.2 = 0.5 · 0.4
        (0.51, vec![0, 4]),
        (0.63, vec![0]),
        (1.0, vec![0]),
    ];
    for (min_p, expected) in cases {
        let p = SamplingParams { min_p, ..params(1.0) };
        assert_eq!(kept(&logits, &p), expected, "min_p = {min_p}");
    }
    // Tokens exactly at the threshold (0.3 = 0.75 · 0.4) are kept, ties alike.
    let tied = logits_of(&[0.3, 0.3, 0.4]);
    assert_eq!(kept(&tied, &SamplingParams { min_p: 0.75, ..params(1.0) }), vec![2, 0, 1]);
    // Combined with top-p (applied first): top_p 0.9 keeps 0, 4, 1, 2; min_p 0.3 then drops 2.
    let both = SamplingParams { top_p: 0.9, min_p: 0.3, ..params(1.0) };
    assert_eq!(kept(&logits, &both), vec![0, 4, 1]);
    let c = candidate_set(&logits, &both);
    let sum: f32 = c.iter().map(|&(_, p)| p).sum();
    assert!((sum - 1.0).abs() < 1e-5);
    assert!((c[0].1 - 0.4 / 0.85).abs() < 1e-5, "{c:?}");
}

#[test]
fn bad_logits_are_never_candidates() {
    let logits = [f32::NAN, 1.0, f32::NEG_INFINITY, 0.0];
    assert_eq!(kept(&logits, &params(1.0)), vec![1, 3]);
    // +inf takes all the probability, shared among the +inf tokens.
    let c = candidate_set(&[1.0, f32::INFINITY, 0.0, f32::INFINITY], &params(1.0));
    assert_eq!(c, vec![(1, 0.5), (3, 0.5)]);
    assert!(candidate_set(&[f32::NAN, f32::NEG_INFINITY], &params(1.0)).is_empty());
    let mut s = Sampler::new(params(1.0));
    let h = TokenCounts::new();
    assert_eq!(s.try_sample(&mut [f32::NAN, f32::NEG_INFINITY], &h), Err(SamplingError::NoCandidates));
    for _ in 0..100 {
        let id = s.sample(&mut [f32::NAN, 1.0, f32::NEG_INFINITY, 0.0], &h);
        assert!(id == 1 || id == 3);
    }
}

// ---------------------------------------------------------------------------------------------------
// Penalties
// ---------------------------------------------------------------------------------------------------

#[test]
fn penalties_change_the_right_logits() {
    let mut history = TokenCounts::new();
    history.add_prompt(0); // prompt only
    history.add_prompt(1);
    history.add_generated(1); // prompt and generated once
    history.add_generated(2);
    history.add_generated(2);
    history.add_generated(2); // generated three times
    history.add_generated(99); // beyond the logits: ignored
    assert_eq!((history.prompt_count(1), history.generated_count(1), history.generated_count(2)), (1, 1, 3));
    assert!(history.contains(0) && !history.contains(3));
    assert_eq!(history.distinct(), 4);

    let base = [2.0f32, -2.0, 4.0, 1.0, 0.0];
    // Repetition penalty 2: positive halved, negative doubled, on prompt and generated tokens.
    let mut l = base;
    apply_penalties(&mut l, &history, &SamplingParams { repetition_penalty: 2.0, ..params(1.0) });
    assert_eq!(l, [1.0, -4.0, 2.0, 1.0, 0.0]);
    // Presence 0.5 and frequency 0.25 on generated tokens only.
    let mut l = base;
    let p = SamplingParams { presence_penalty: 0.5, frequency_penalty: 0.25, ..params(1.0) };
    apply_penalties(&mut l, &history, &p);
    assert_eq!(l, [2.0, -2.0 - 0.5 - 0.25, 4.0 - 0.5 - 0.75, 1.0, 0.0]);
    // Both: repetition first, then presence/frequency.
    let mut l = base;
    let p = SamplingParams {
        repetition_penalty: 2.0,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        ..params(1.0)
    };
    apply_penalties(&mut l, &history, &p);
    assert_eq!(l, [1.0, -4.0 - 0.75, 2.0 - 1.25, 1.0, 0.0]);
    // Neutral parameters leave the logits alone.
    let mut l = base;
    apply_penalties(&mut l, &history, &params(1.0));
    assert_eq!(l, base);
    // TokenCounts::from_prompt.
    let h = TokenCounts::from_prompt(&[5, 5, 6]);
    assert_eq!((h.prompt_count(5), h.generated_count(5), h.prompt_count(6)), (2, 0, 1));
}

#[test]
fn penalties_steer_greedy_sampling() {
    let mut history = TokenCounts::new();
    history.add_generated(0);
    let mut s = Sampler::new(SamplingParams { repetition_penalty: 1.5, ..SamplingParams::greedy() });
    // 3.0 / 1.5 = 2.0 < 2.5: the repeated token loses.
    assert_eq!(s.sample(&mut [3.0, 2.5], &history), 1);
    let mut s = Sampler::new(SamplingParams { frequency_penalty: 0.4, ..SamplingParams::greedy() });
    assert_eq!(s.sample(&mut [3.0, 2.5], &history), 0);
    history.add_generated(0);
    assert_eq!(s.sample(&mut [3.0, 2.5], &history), 1, "two occurrences: 3.0 - 0.8 < 2.5");
}

// ---------------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------------

fn draws(p: &SamplingParams, logits: &[f32], n: usize) -> Vec<u32> {
    let mut s = Sampler::new(p.clone());
    let h = TokenCounts::new();
    (0..n).map(|_| s.sample(&mut logits.to_vec(), &h)).collect()
}

#[test]
fn seeded_sampling_is_reproducible() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32) / 25.0).collect();
    let p = SamplingParams {
        temperature: 0.9,
        top_k: 200,
        top_p: 0.95,
        min_p: 0.01,
        seed: Some(42),
        ..Default::default()
    };
    let a = draws(&p, &logits, 1000);
    assert_eq!(a, draws(&p, &logits, 1000), "same seed, same draws");
    let b = draws(&SamplingParams { seed: Some(43), ..p.clone() }, &logits, 1000);
    assert_ne!(a, b, "another seed, other draws");
    // Unseeded samplers differ from each other (with overwhelming probability).
    let unseeded = SamplingParams { seed: None, ..p.clone() };
    assert_ne!(draws(&unseeded, &logits, 1000), draws(&unseeded, &logits, 1000));
    // A cloned sampler continues identically.
    let mut s = Sampler::new(p.clone());
    let h = TokenCounts::new();
    s.sample(&mut logits.clone(), &h);
    let mut t = s.clone();
    for _ in 0..100 {
        assert_eq!(s.sample(&mut logits.clone(), &h), t.sample(&mut logits.clone(), &h));
    }
}

#[test]
fn draws_stay_inside_the_candidate_set() {
    let logits: Vec<f32> = (0..64).map(|i| ((i * 13 % 17) as f32) * 0.3).collect();
    for p in [
        SamplingParams { top_k: 5, ..params(1.0) },
        SamplingParams { top_p: 0.6, ..params(1.3) },
        SamplingParams { min_p: 0.3, ..params(0.7) },
        SamplingParams { top_k: 20, top_p: 0.9, min_p: 0.2, ..params(2.0) },
    ] {
        let allowed = kept(&logits, &p);
        let mut seen: Vec<u32> = draws(&p, &logits, 5000);
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.iter().all(|id| allowed.contains(id)), "{p:?}: drew {seen:?}, allowed {allowed:?}");
        let mut allowed_sorted = allowed.clone();
        allowed_sorted.sort_unstable();
        assert_eq!(seen, allowed_sorted, "{p:?}: every candidate is drawn in 5000 tries");
    }
}

#[test]
fn empirical_distribution_matches_softmax() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 1.5, 0.0];
    for temperature in [1.0f32, 0.7] {
        let p = SamplingParams { temperature, seed: Some(2024), ..Default::default() };
        let n = 20_000;
        let mut counts = [0usize; 6];
        for id in draws(&p, &logits, n) {
            counts[id as usize] += 1;
        }
        let w: Vec<f64> = logits.iter().map(|&l| (f64::from(l) / f64::from(temperature)).exp()).collect();
        let z: f64 = w.iter().sum();
        for i in 0..6 {
            let expected = w[i] / z;
            let got = counts[i] as f64 / n as f64;
            // 4.5 standard deviations of a binomial proportion.
            let tol = 4.5 * (expected * (1.0 - expected) / n as f64).sqrt();
            assert!((got - expected).abs() < tol, "T={temperature} token {i}: {got} vs {expected}");
        }
        let c = candidate_set(&logits, &p);
        for (id, prob) in c {
            assert!((f64::from(prob) - w[id as usize] / z).abs() < 1e-6);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Stop strings
// ---------------------------------------------------------------------------------------------------

/// Feeds `chunks`; returns everything emitted (including the final flush) and whether a stop was hit.
fn run_stops(stops: &[&str], chunks: &[&str]) -> (String, bool, Option<String>) {
    let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
    let mut out = String::new();
    for c in chunks {
        let (safe, hit) = m.push(c);
        out.push_str(&safe);
        if hit {
            return (out, true, m.matched().map(str::to_string));
        }
    }
    out.push_str(&m.finish());
    (out, false, None)
}

#[test]
fn stop_strings() {
    // Split across chunks.
    assert_eq!(
        run_stops(&["STOP"], &["Hello ST", "O", "P world"]),
        ("Hello ".into(), true, Some("STOP".into()))
    );
    // A partial prefix that turns out not to be a stop is released.
    assert_eq!(run_stops(&["STOP"], &["Hello ST", "OX"]), ("Hello STOX".into(), false, None));
    assert_eq!(run_stops(&["STOP"], &["Hello ST"]), ("Hello ST".into(), false, None), "flushed at the end");
    // Several stop strings: the earliest in the text wins.
    assert_eq!(run_stops(&["world", "lo"], &["Hello world"]), ("Hel".into(), true, Some("lo".into())));
    assert_eq!(
        run_stops(&["\n\n", "User:"], &["Answer.\n", "\nUser: hi"]),
        ("Answer.".into(), true, Some("\n\n".into()))
    );
    // At the very start.
    assert_eq!(run_stops(&["<end>"], &["<end>rest"]), ("".into(), true, Some("<end>".into())));
    assert_eq!(run_stops(&["<end>"], &["<", "e", "nd>"]), ("".into(), true, Some("<end>".into())));
    // Overlapping candidates: "aab" after "aaa…" is found.
    assert_eq!(run_stops(&["aab"], &["a", "a", "a", "b"]), ("a".into(), true, Some("aab".into())));
    // Multi-byte characters: held back and released whole.
    assert_eq!(run_stops(&["日本語"], &["これは日本", "です"]), ("これは日本です".into(), false, None));
    assert_eq!(
        run_stops(&["日本語"], &["これは日本", "語です"]),
        ("これは".into(), true, Some("日本語".into()))
    );
    // Empty stop strings are ignored; no stops pass everything through.
    assert_eq!(run_stops(&[""], &["abc"]), ("abc".into(), false, None));
    assert_eq!(run_stops(&[], &["a", "b"]), ("ab".into(), false, None));
}

#[test]
fn stop_matcher_releases_text_early_and_stays_stopped() {
    let mut m = StopMatcher::new(vec!["###".into()]);
    assert_eq!(m.push("abc"), ("abc".into(), false), "nothing to hold");
    assert_eq!(m.push("de#"), ("de".into(), false), "'#' may start the stop");
    assert_eq!(m.push("#"), ("".into(), false));
    assert_eq!(m.push("x"), ("##x".into(), false));
    assert_eq!(m.push("##"), ("".into(), false));
    assert_eq!(m.push("#tail"), ("".into(), true));
    assert!(m.stopped());
    assert_eq!(m.push("more"), ("".into(), true));
    assert_eq!(m.finish(), "");
}
