//! Per-sequence output bookkeeping shared by single-sequence generation and the batching scheduler:
//! generated ids → streamed text, EOS and stop strings, and log-probabilities of the model's logits.

use super::generate::FinishReason;
use super::sampling::StopMatcher;
use super::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

/// Turns one sequence's generated ids into text that is safe to emit, and says when it must stop.
#[derive(Clone, Debug)]
pub struct TextOutput {
    decoder: StreamDecoder,
    stops: StopMatcher,
    eos: Vec<u32>,
    ignore_eos: bool,
}

impl TextOutput {
    /// Output state for one sequence: stop strings, the tokenizer's EOS ids unless `ignore_eos`.
    pub fn new(tok: &Tokenizer, stop: Vec<String>, ignore_eos: bool) -> Self {
        TextOutput {
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(stop),
            eos: tok.eos_ids().to_vec(),
            ignore_eos,
        }
    }

    /// Takes one generated id: returns the text it releases and `Some(Stop)` when the id is EOS or
    /// the text reached a stop string (then the stop string and what follows are dropped).
    pub fn push(
        &mut self,
        tok: &Tokenizer,
        id: u32,
    ) -> Result<(String, Option<FinishReason>), TokenizerError> {
        if !self.ignore_eos && self.eos.contains(&id) {
            return Ok((String::new(), Some(FinishReason::Stop)));
        }
        let Some(piece) = self.decoder.push(tok, id)? else { return Ok((String::new(), None)) };
        let (safe, hit) = self.stops.push(&piece);
        Ok((safe, hit.then_some(FinishReason::Stop)))
    }

    /// End of generation: the text still held back (an unfinished character, a possible stop-string
    /// start), or nothing when a stop string was hit.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String, TokenizerError> {
        if self.stops.stopped() {
            return Ok(String::new());
        }
        let mut out = String::new();
        if let Some(piece) = self.decoder.finish(tok)? {
            let (safe, hit) = self.stops.push(&piece);
            out.push_str(&safe);
            if hit {
                return Ok(out);
            }
        }
        out.push_str(&self.stops.finish());
        Ok(out)
    }
}

/// Log-probability of the chosen token and of the most likely alternatives at one position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen token and its log-probability.
    pub chosen: (u32, f32),
    /// The `k` most likely tokens, best first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of the model's raw `logits` (before penalties and temperature, as vLLM reports them):
/// the chosen token's log-probability and the `k` best.
pub fn logprobs(logits: &[f32], chosen: u32, k: usize) -> TokenLogprobs {
    let max = logits.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|l| !l.is_nan()).map(|&l| f64::from(l - max).exp()).sum();
    let lse = f64::from(max) + sum.ln();
    let lp = |id: u32| logits.get(id as usize).map_or(f32::NEG_INFINITY, |&l| (f64::from(l) - lse) as f32);
    let mut ids: Vec<u32> = (0..logits.len() as u32).filter(|&i| !logits[i as usize].is_nan()).collect();
    let by_best = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    let k = k.min(ids.len());
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_best);
    }
    ids.truncate(k);
    ids.sort_by(by_best);
    TokenLogprobs { chosen: (chosen, lp(chosen)), top: ids.into_iter().map(|i| (i, lp(i))).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let lp = logprobs(&logits, 2, 2);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((f64::from(lp.chosen.1) - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3]);
        let total: f64 = logits
            .iter()
            .enumerate()
            .map(|(i, _)| f64::from(logprobs(&logits, i as u32, 0).chosen.1).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
