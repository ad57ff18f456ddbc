//! Continuous batching changes no result: a multi-sequence forward step equals each sequence run alone,
//! and the scheduler reproduces the transformers goldens for 64 concurrent sequences, with and without
//! KV-cache preemption.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use prism::backend::{BackendKind, BackendOptions, StepBatch, create};
use prism::engine::generate::{FinishReason, GenerateParams, ModelFiles};
use prism::engine::model::{Model, ModelSizing};
use prism::engine::sampling::SamplingParams;
use prism::engine::scheduler::{Scheduler, SchedulerConfig, SeqEvent, SeqRequest};
use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

struct Case {
    input_ids: Vec<u32>,
    new_ids: Vec<u32>,
    text: String,
}

fn cases() -> Vec<Case> {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(shared("golden/stories260K.json")).unwrap()).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            input_ids: ids(&c["input_ids"]),
            new_ids: ids(&c["greedy_new_ids"]),
            text: c["greedy_text"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn batched_forward_equals_each_sequence_alone() {
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let vocab = files.config.vocab;
    let mut b = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 2 }).unwrap();
    let sizing = ModelSizing { max_step_tokens: 64, max_outputs: 8, kv_blocks: 64, block_size: 4 };
    let model = Model::load(b.as_mut(), &files.config, &files.weights, sizing).unwrap();
    let prompts: Vec<Vec<u32>> = cases().into_iter().map(|c| c.input_ids).collect();
    // Sequence k owns blocks 8k .. 8k+8, interleaved in reverse so tables are not contiguous.
    let blocks: Vec<Vec<u32>> =
        (0..prompts.len() as u32).map(|k| (0..8).map(|j| 8 * j + k).collect()).collect();

    let mut alone = Vec::new();
    for (p, bl) in prompts.iter().zip(&blocks) {
        model.forward(b.as_mut(), &StepBatch::single(p, 0, bl)).unwrap();
        let mut logits = vec![0.0; vocab];
        model.read_logits(b.as_mut(), &mut logits).unwrap();
        alone.push(logits);
    }
    // All prompts in one step, then one batched decode step of each sequence's greedy token.
    let mut step = StepBatch::default();
    for (k, (p, bl)) in prompts.iter().zip(&blocks).enumerate() {
        step.tokens.extend(p);
        step.positions.extend(0..p.len() as u32);
        step.token_seq.extend(std::iter::repeat_n(k as u32, p.len()));
        step.block_table_start.push(step.block_tables.len() as u32);
        step.block_table_len.push(bl.len() as u32);
        step.block_tables.extend(bl);
        step.output_rows.push(step.tokens.len() as u32 - 1);
    }
    model.forward(b.as_mut(), &step).unwrap();
    let n = prompts.len();
    let mut batched = vec![0.0; n * vocab];
    model.read_logits(b.as_mut(), &mut batched).unwrap();
    for k in 0..n {
        let err = alone[k].iter().zip(&batched[k * vocab..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "sequence {k}: batched prefill logits differ by {err}");
    }

    let next: Vec<u32> = alone.iter().map(|l| prism::engine::sampling::argmax(l).unwrap()).collect();
    let mut alone_next = Vec::new();
    for k in 0..n {
        model.forward(b.as_mut(), &StepBatch::single(&[next[k]], prompts[k].len(), &blocks[k])).unwrap();
        let mut logits = vec![0.0; vocab];
        model.read_logits(b.as_mut(), &mut logits).unwrap();
        alone_next.push(logits);
    }
    let decode = StepBatch {
        tokens: next.clone(),
        positions: prompts.iter().map(|p| p.len() as u32).collect(),
        token_seq: (0..n as u32).collect(),
        block_table_start: (0..n as u32).map(|k| 8 * k).collect(),
        block_table_len: vec![8; n],
        block_tables: blocks.concat(),
        output_rows: (0..n as u32).collect(),
    };
    model.forward(b.as_mut(), &decode).unwrap();
    model.read_logits(b.as_mut(), &mut batched).unwrap();
    let mut ids = vec![0u32; n];
    model.read_argmax(b.as_mut(), &mut ids).unwrap();
    for k in 0..n {
        let err =
            alone_next[k].iter().zip(&batched[k * vocab..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "sequence {k}: batched decode logits differ by {err}");
        assert_eq!(ids[k], prism::engine::sampling::argmax(&alone_next[k]).unwrap());
    }
}

/// Runs `copies` of every golden case through one scheduler at once; returns (texts, ids) per request.
fn run_all(cfg: SchedulerConfig, copies: usize) -> (Vec<(String, Vec<u32>)>, Scheduler) {
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let backend = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 2 }).unwrap();
    let mut sched = Scheduler::new(backend, files, cfg).unwrap();
    let cases = cases();
    let mut receivers = Vec::new();
    for i in 0..copies * cases.len() {
        let c = &cases[i % cases.len()];
        let (tx, rx) = mpsc::channel();
        let params = GenerateParams {
            max_tokens: c.new_ids.len(),
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: false,
        };
        let req = SeqRequest {
            prompt_ids: c.input_ids.clone(),
            params,
            top_logprobs: None,
            deadline: None,
            sink: Box::new(tx),
        };
        sched.add(req, false);
        receivers.push(rx);
    }
    while !sched.is_idle() {
        sched.step();
    }
    let outs = receivers
        .into_iter()
        .map(|rx| {
            let (mut text, mut ids) = (String::new(), Vec::new());
            for ev in rx.try_iter() {
                match ev {
                    SeqEvent::Token { id, text: t, .. } => {
                        ids.push(id);
                        text.push_str(&t);
                    }
                    SeqEvent::Done { finish, text: t, completion_tokens, .. } => {
                        text.push_str(&t);
                        assert_eq!(finish, FinishReason::Length);
                        assert_eq!(completion_tokens, ids.len());
                    }
                    SeqEvent::Error(e) => panic!("sequence failed: {e}"),
                }
            }
            (text, ids)
        })
        .collect();
    (outs, sched)
}

#[test]
fn sixty_four_concurrent_sequences_match_the_goldens() {
    let cases = cases();
    let check = |outs: &[(String, Vec<u32>)]| {
        assert_eq!(outs.len(), 64);
        for (i, (text, ids)) in outs.iter().enumerate() {
            let c = &cases[i % cases.len()];
            assert_eq!(ids, &c.new_ids, "request {i}: ids");
            assert_eq!(text, &c.text, "request {i}: text");
        }
    };
    // Room for everyone: no preemption; small prefill budget so prompts are chunked across steps.
    let roomy = SchedulerConfig { max_seqs: 64, max_step_tokens: 70, block_size: 16, kv_tokens: 8192 };
    let (outs, sched) = run_all(roomy, 16);
    check(&outs);
    let g = sched.gauges();
    assert_eq!(g.preemptions.load(Ordering::Relaxed), 0);
    assert_eq!(g.kv_used_blocks.load(Ordering::Relaxed), 0, "every block returned");

    // One context's worth of cache for 64 sequences of ~70 positions: waits and preemptions.
    let tight = SchedulerConfig { max_seqs: 64, max_step_tokens: 64, block_size: 4, kv_tokens: 512 };
    let (outs, sched) = run_all(tight, 16);
    check(&outs);
    let g = sched.gauges();
    assert!(g.preemptions.load(Ordering::Relaxed) > 0, "the tight pool must have preempted");
    assert_eq!(g.kv_used_blocks.load(Ordering::Relaxed), 0, "every block returned");
}

#[test]
fn invalid_requests_fail_alone() {
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let backend = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 1 }).unwrap();
    let mut sched = Scheduler::new(backend, files, SchedulerConfig::default()).unwrap();
    let context = sched.context();
    let params = |max_tokens| GenerateParams {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: false,
    };
    let mut rxs = Vec::new();
    for (prompt, max) in [(vec![], 4), (vec![1; 10], context), (vec![1, 403], 3)] {
        let (tx, rx) = mpsc::channel();
        sched.add(
            SeqRequest {
                prompt_ids: prompt,
                params: params(max),
                top_logprobs: None,
                deadline: None,
                sink: Box::new(tx),
            },
            false,
        );
        rxs.push(rx);
    }
    while !sched.is_idle() {
        sched.step();
    }
    let events: Vec<Vec<SeqEvent>> = rxs.iter().map(|rx| rx.try_iter().collect()).collect();
    assert!(matches!(&events[0][..], [SeqEvent::Error(e)] if e.contains("empty")));
    assert!(matches!(&events[1][..], [SeqEvent::Error(e)] if e.contains("exceeds the context")));
    assert!(matches!(events[2].last(), Some(SeqEvent::Done { completion_tokens: 3, .. })));
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding() {
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let backend = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 1 }).unwrap();
    let cfg = SchedulerConfig { max_seqs: 4, max_step_tokens: 32, block_size: 16, kv_tokens: 2048 };
    let mut sched = Scheduler::new(backend, files, cfg).unwrap();
    let params = |max_tokens| GenerateParams {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: true,
    };
    let (tx, decoding) = mpsc::channel();
    let req = |prompt: Vec<u32>, max, sink: mpsc::Sender<SeqEvent>| SeqRequest {
        prompt_ids: prompt,
        params: params(max),
        top_logprobs: None,
        deadline: None,
        sink: Box::new(sink),
    };
    sched.add(req(vec![1, 403, 407, 261, 378], 100, tx), false);
    sched.step();
    assert_eq!(decoding.try_iter().count(), 1, "first token after the prompt step");
    // A 300-token prompt arrives: it needs ten 32-row steps, and the decoder gets a token in every one.
    let (tx, long) = mpsc::channel();
    sched.add(req((0..300).map(|i| 300 + (i % 100)).collect(), 4, tx), false);
    for step in 0..10 {
        sched.step();
        assert_eq!(decoding.try_iter().count(), 1, "step {step}: the decoding sequence advanced");
        let got = long.try_iter().count();
        assert_eq!(got, usize::from(step == 9), "step {step}: the long prompt yields only when prefilled");
    }
}

#[test]
fn prefix_cache_reuses_blocks_without_changing_results() {
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let backend = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 1 }).unwrap();
    let cfg = SchedulerConfig { max_seqs: 4, max_step_tokens: 64, block_size: 16, kv_tokens: 1024 };
    let mut sched = Scheduler::new(backend, files, cfg).unwrap();
    let case = cases().remove(0);
    let mut run = |prompt: Vec<u32>, max_tokens: usize| {
        let (tx, rx) = mpsc::channel();
        let params = GenerateParams {
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: false,
        };
        sched.add(
            SeqRequest { prompt_ids: prompt, params, top_logprobs: None, deadline: None, sink: Box::new(tx) },
            false,
        );
        while !sched.is_idle() {
            sched.step();
        }
        let (mut ids, mut cached) = (Vec::new(), usize::MAX);
        for ev in rx.try_iter() {
            match ev {
                SeqEvent::Token { id, .. } => ids.push(id),
                SeqEvent::Done { cached_tokens, .. } => cached = cached_tokens,
                SeqEvent::Error(e) => panic!("{e}"),
            }
        }
        (ids, cached)
    };
    let (ids, cached) = run(case.input_ids.clone(), 64);
    assert_eq!((ids, cached), (case.new_ids.clone(), 0));
    // The story so far as a new prompt: its first two full blocks (32 of 44 known tokens) are cached by
    // the first request, and the greedy continuation is still the golden one.
    let mut prompt = case.input_ids.clone();
    prompt.extend(&case.new_ids[..40]);
    let (ids, cached) = run(prompt, 24);
    assert_eq!(cached, 32);
    assert_eq!(ids, case.new_ids[40..].to_vec());
    assert_eq!(sched.gauges().kv_used_blocks.load(Ordering::Relaxed), 0);
}
