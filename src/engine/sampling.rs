//! Token sampling (penalties, greedy, top-k / top-p / min-p, seeded draws) and stop-string matching.
//!
//! Order of operations in [`Sampler::sample`] (as llama.cpp and vLLM):
//!
//! 1. **repetition penalty** (HF/CTRL): every token seen in the prompt *or* the generated text has its
//!    logit divided by the penalty when positive, multiplied when negative;
//! 2. **presence / frequency penalties** (OpenAI): `logit -= presence·[n > 0] + frequency·n`, where `n`
//!    counts the token in the *generated* text only;
//! 3. `temperature == 0` → **argmax** (the first index on ties; NaN is never chosen); otherwise
//! 4. **top-k**: keep the `k` largest logits (ties broken towards the lower id);
//! 5. **softmax** with the temperature over what is left;
//! 6. **top-p**: keep the smallest set of most probable tokens whose cumulative probability reaches
//!    `top_p` (at least one; ties in probability go to the lower id);
//! 7. **min-p**: keep tokens with `p ≥ min_p · p_max`;
//! 8. renormalize and **draw** with the sampler's ChaCha8 generator.
//!
//! Both thresholds allow a relative 1e-6 of rounding, so a token exactly at the boundary is kept.
//! NaN and −∞ logits are never candidates. Top-k uses `select_nth_unstable` (O(vocab)); top-p sorts only
//! a growing prefix of the best tokens until it reaches `top_p`, so a 128k vocabulary is never fully
//! sorted in the common case.
//!
//! [`StopMatcher`] finds stop strings in streamed text, holding back what could still become one.

use std::cmp::Ordering;
use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tolerance on the top-p and min-p thresholds, so that a token exactly at the boundary (up to
/// floating-point rounding) is kept.
const THRESHOLD_EPS: f64 = 1e-6;

/// Invalid sampling parameters, or logits with nothing to sample.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A parameter is out of range.
    #[error("invalid sampling parameter `{name}` = {value}: must be {expected}")]
    Invalid {
        /// The parameter's name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// The logits are empty, or every one is NaN or −∞.
    #[error("no token can be sampled: the logits are empty or all NaN / -inf")]
    NoCandidates,
}

/// How to pick the next token. [`Default`] is greedy decoding with every filter and penalty off:
/// `temperature 0, top_k 0, top_p 1, min_p 0, repetition_penalty 1, presence/frequency 0, seed None`.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax). Must be finite and ≥ 0.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` = off.
    pub top_k: usize,
    /// Nucleus sampling threshold in (0, 1]; `1` = off.
    pub top_p: f32,
    /// Keep tokens with probability ≥ `min_p` × the top probability; in [0, 1]; `0` = off.
    pub min_p: f32,
    /// HF/CTRL repetition penalty over prompt + generated tokens; > 0; `1` = off.
    pub repetition_penalty: f32,
    /// OpenAI presence penalty over generated tokens (finite; OpenAI allows [-2, 2]); `0` = off.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty over generated tokens (finite; OpenAI allows [-2, 2]); `0` = off.
    pub frequency_penalty: f32,
    /// Seed of the random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (the default).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        fn check(
            ok: bool,
            name: &'static str,
            value: f32,
            expected: &'static str,
        ) -> Result<(), SamplingError> {
            if ok { Ok(()) } else { Err(SamplingError::Invalid { name, value: value.to_string(), expected }) }
        }
        let t = self.temperature;
        check(t.is_finite() && t >= 0.0, "temperature", t, "a finite number >= 0")?;
        check(self.top_p > 0.0 && self.top_p <= 1.0, "top_p", self.top_p, "in (0, 1]")?;
        check((0.0..=1.0).contains(&self.min_p), "min_p", self.min_p, "in [0, 1]")?;
        let r = self.repetition_penalty;
        check(r.is_finite() && r > 0.0, "repetition_penalty", r, "a finite number > 0")?;
        check(self.presence_penalty.is_finite(), "presence_penalty", self.presence_penalty, "finite")?;
        check(self.frequency_penalty.is_finite(), "frequency_penalty", self.frequency_penalty, "finite")?;
        Ok(())
    }

    /// Whether tokens are picked by argmax (`temperature` is 0, or not a positive number).
    pub fn is_greedy(&self) -> bool {
        let t = self.temperature;
        !(t > 0.0 && (1.0 / t).is_finite())
    }

    /// Whether any penalty changes the logits.
    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

// ----------------------------------------------------------------------------------------------------
// History and penalties
// ----------------------------------------------------------------------------------------------------

/// Occurrences of one token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    prompt: u32,
    generated: u32,
}

/// How often each token occurred in the prompt and in the generated text, for the penalties:
/// the repetition penalty uses both (as Hugging Face and vLLM), presence/frequency penalties only the
/// generated tokens (as OpenAI and vLLM).
#[derive(Clone, Debug, Default)]
pub struct TokenCounts {
    seen: HashMap<u32, Seen>,
}

impl TokenCounts {
    /// Empty counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts of a prompt.
    pub fn from_prompt(prompt: &[u32]) -> Self {
        let mut c = Self::new();
        prompt.iter().for_each(|&t| c.add_prompt(t));
        c
    }

    /// Records one prompt token.
    pub fn add_prompt(&mut self, id: u32) {
        let s = self.seen.entry(id).or_default();
        s.prompt = s.prompt.saturating_add(1);
    }

    /// Records one generated token.
    pub fn add_generated(&mut self, id: u32) {
        let s = self.seen.entry(id).or_default();
        s.generated = s.generated.saturating_add(1);
    }

    /// Occurrences of `id` in the prompt.
    pub fn prompt_count(&self, id: u32) -> u32 {
        self.seen.get(&id).map_or(0, |s| s.prompt)
    }

    /// Occurrences of `id` in the generated text.
    pub fn generated_count(&self, id: u32) -> u32 {
        self.seen.get(&id).map_or(0, |s| s.generated)
    }

    /// Whether `id` occurred anywhere (prompt or generated).
    pub fn contains(&self, id: u32) -> bool {
        self.seen.contains_key(&id)
    }

    /// Number of distinct tokens seen.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

/// Applies the repetition, presence and frequency penalties of `params` to `logits` in place (steps 1–2
/// of the module docs). Costs O(distinct tokens in `history`); ids beyond `logits` are ignored.
pub fn apply_penalties(logits: &mut [f32], history: &TokenCounts, params: &SamplingParams) {
    if !params.has_penalties() {
        return;
    }
    let (rep, presence, frequency) =
        (params.repetition_penalty, params.presence_penalty, params.frequency_penalty);
    for (&id, seen) in &history.seen {
        let Some(l) = logits.get_mut(id as usize) else { continue };
        if rep != 1.0 {
            *l = if *l > 0.0 { *l / rep } else { *l * rep };
        }
        if seen.generated > 0 {
            *l -= presence + frequency * seen.generated as f32;
        }
    }
}

/// Index of the largest logit: the first on ties; NaN never wins. `None` when empty or all NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
}

// ----------------------------------------------------------------------------------------------------
// Filtering
// ----------------------------------------------------------------------------------------------------

/// A surviving token: id, logit, and weight `exp((logit − max)/T)` = p / p_max.
#[derive(Clone, Copy, Debug)]
struct Cand {
    id: u32,
    logit: f32,
    w: f32,
}

/// Best first: larger logit, then lower id.
fn by_logit_desc(a: &Cand, b: &Cand) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Steps 4–7 of the module docs on `logits` (penalties already applied, not greedy): fills `buf` with
/// the kept tokens and their weights, and returns the weights' sum (0 when nothing can be sampled).
/// `buf` is sorted best first unless no filter is active.
fn filter(logits: &[f32], params: &SamplingParams, buf: &mut Vec<Cand>) -> f64 {
    buf.clear();
    buf.extend(
        logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan() && **l != f32::NEG_INFINITY)
            .map(|(i, &l)| Cand { id: i as u32, logit: l, w: 0.0 }),
    );
    if buf.is_empty() {
        return 0.0;
    }
    // +∞ logits take all the probability, shared equally.
    if buf.iter().any(|c| c.logit == f32::INFINITY) {
        buf.retain(|c| c.logit == f32::INFINITY);
        buf.iter_mut().for_each(|c| c.w = 1.0);
        return buf.len() as f64;
    }

    // 4. top-k.
    let k = params.top_k;
    if k > 0 && k < buf.len() {
        buf.select_nth_unstable_by(k - 1, by_logit_desc);
        buf.truncate(k);
    }

    // 5. softmax weights relative to the best token (p / p_max), and their total.
    let max = buf.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / params.temperature;
    let mut total = 0.0f64;
    for c in buf.iter_mut() {
        c.w = ((c.logit - max) * inv_t).exp();
        total += f64::from(c.w);
    }

    let top_p = f64::from(params.top_p);
    let min_p = f64::from(params.min_p);
    let use_top_p = top_p < 1.0;
    let use_min_p = min_p > 0.0;

    // 7. min-p first: it keeps a best-first prefix independent of top-p's cut (w is p / p_max), and
    //    shrinking the list early makes top-p's sort cheaper. Top-p still uses the full total below.
    if use_min_p {
        let threshold = (min_p * (1.0 - THRESHOLD_EPS)) as f32;
        buf.retain(|c| c.w >= threshold);
    }
    buf.retain(|c| c.w > 0.0); // underflowed weights can never be drawn
    if buf.is_empty() {
        return 0.0;
    }

    // 6. top-p over probabilities w / total, sorting only as much of the list as needed.
    if use_top_p {
        let target = (top_p - THRESHOLD_EPS) * total;
        let mut m = 256.min(buf.len());
        loop {
            if m < buf.len() {
                buf.select_nth_unstable_by(m - 1, by_logit_desc);
            }
            buf[..m].sort_unstable_by(by_logit_desc);
            let mut cum = 0.0f64;
            let cut = buf[..m].iter().position(|c| {
                cum += f64::from(c.w);
                cum >= target
            });
            if let Some(i) = cut {
                buf.truncate(i + 1);
                break;
            }
            if m == buf.len() {
                break;
            }
            m = (m * 4).min(buf.len());
        }
    } else if k > 0 || use_min_p {
        buf.sort_unstable_by(by_logit_desc);
    }
    buf.iter().map(|c| f64::from(c.w)).sum()
}

/// The tokens `params` would sample from for these logits (no penalties), with their renormalized
/// probabilities, best first. Greedy parameters give the argmax with probability 1. Empty when nothing
/// can be sampled.
pub fn candidate_set(logits: &[f32], params: &SamplingParams) -> Vec<(u32, f32)> {
    if params.is_greedy() {
        return argmax(logits).map(|id| vec![(id, 1.0)]).unwrap_or_default();
    }
    let mut buf = Vec::new();
    let total = filter(logits, params, &mut buf);
    buf.sort_unstable_by(by_logit_desc);
    buf.iter().map(|c| (c.id, (f64::from(c.w) / total) as f32)).collect()
}

// ----------------------------------------------------------------------------------------------------
// Sampler
// ----------------------------------------------------------------------------------------------------

/// Picks tokens for one sequence. Deterministic: the same seed, logits and history give the same
/// tokens. Each non-greedy draw consumes one `f64` from the generator; greedy draws consume nothing.
#[derive(Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    buf: Vec<Cand>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler for `params` (call [`SamplingParams::validate`] first: out-of-range values are not
    /// rejected here; a non-positive or NaN temperature samples greedily, top-p ≥ 1 and min-p ≤ 0 are off).
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        Sampler { params, rng, buf: Vec::new() }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Whether every pick is the plain argmax of the raw logits (so a device-side argmax suffices).
    pub fn is_greedy_without_penalties(&self) -> bool {
        self.params.is_greedy() && !self.params.has_penalties()
    }

    /// Picks the next token; `logits` (one per vocabulary entry) get the penalties applied in place.
    /// When nothing can be sampled (empty logits, or all NaN / −∞), returns 0; see [`Self::try_sample`].
    pub fn sample(&mut self, logits: &mut [f32], history: &TokenCounts) -> u32 {
        self.try_sample(logits, history).unwrap_or(0)
    }

    /// Like [`Self::sample`], but reports logits with nothing to sample.
    pub fn try_sample(&mut self, logits: &mut [f32], history: &TokenCounts) -> Result<u32, SamplingError> {
        apply_penalties(logits, history, &self.params);
        if self.params.is_greedy() {
            return argmax(logits).ok_or(SamplingError::NoCandidates);
        }
        let total = filter(logits, &self.params, &mut self.buf);
        let last = self.buf.last().ok_or(SamplingError::NoCandidates)?.id;
        if !(total > 0.0 && total.is_finite()) {
            return Err(SamplingError::NoCandidates);
        }
        let u = self.rng.random::<f64>() * total;
        let mut cum = 0.0f64;
        for c in &self.buf {
            cum += f64::from(c.w);
            if u < cum {
                return Ok(c.id);
            }
        }
        Ok(last) // rounding: u landed at the very end
    }
}

// ----------------------------------------------------------------------------------------------------
// Stop strings
// ----------------------------------------------------------------------------------------------------

/// Finds stop strings in streamed text. Text is released as soon as it cannot be the start of a stop
/// string; a possible start is held back until the following chunks settle it. On a match, the text
/// before the stop string is released and the stop string itself (and everything after) is dropped.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: Option<usize>,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), ..Self::default() }
    }

    /// Feeds one chunk; returns the text safe to emit now and whether a stop string was hit. After a
    /// hit, further chunks return `("", true)`.
    pub fn push(&mut self, chunk: &str) -> (String, bool) {
        if self.matched.is_some() {
            return (String::new(), true);
        }
        self.held.push_str(chunk);
        // The earliest occurrence of any stop string (the first listed on equal positions).
        let hit = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|pos| (pos, i)))
            .min();
        if let Some((pos, i)) = hit {
            self.matched = Some(i);
            self.held.truncate(pos);
            return (std::mem::take(&mut self.held), true);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k)).map(move |k| &s[..k]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let rest = self.held.split_off(self.held.len() - keep);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// End of the stream: releases the held-back text (it did not become a stop string). Empty after a hit.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Whether a stop string was hit.
    pub fn stopped(&self) -> bool {
        self.matched.is_some()
    }

    /// The stop string that was hit.
    pub fn matched(&self) -> Option<&str> {
        self.matched.and_then(|i| self.stops.get(i)).map(String::as_str)
    }
}
