//! Continuous batching: admits, advances, preempts and finishes many sequences, one forward step at a time.
//!
//! Every step is one [`StepBatch`]: one row per decoding sequence (so a decode of N sequences is one
//! N-row matmul per weight) plus chunks of prompts being prefilled, up to `max_step_tokens` rows.
//! Decoding sequences go first, so a long prompt is spread over several steps instead of stalling
//! everyone. New requests join between steps. KV memory is paged ([`BlockPool`]): a sequence holds only
//! the blocks its positions need and grows them step by step. When the pool runs dry, the newest running
//! sequence is preempted: its blocks are freed and it goes back to the front of the queue, to be
//! recomputed (prompt + what it generated so far) when room returns. Its sampler keeps its state, so a
//! preempted sequence produces exactly what it would have without preemption. Full blocks of computed
//! tokens enter the pool's prefix cache; a sequence whose tokens start with cached blocks (a shared system
//! prompt, a resumed preempted sequence) reuses them instead of recomputing them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::config::{GenerationDefaults, ModelConfig};
use super::generate::{EngineError, FinishReason, GenerateParams, ModelFiles};
use super::kv_cache::BlockPool;
use super::model::{Model, ModelSizing};
use super::sampling::{Sampler, TokenCounts};
use super::sequence::{TextOutput, TokenLogprobs, logprobs};
use super::tokenizer::Tokenizer;
use crate::backend::{Backend, StepBatch};

/// How large the batches and the KV pool are.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// Most sequences running at once (rows of a decode step).
    pub max_seqs: usize,
    /// Most token rows in one step (prefill chunks plus decode rows).
    pub max_step_tokens: usize,
    /// Positions per KV block.
    pub block_size: usize,
    /// Positions in the KV pool, shared by all sequences (at least one full context is allocated).
    pub kv_tokens: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_seqs: 64, max_step_tokens: 512, block_size: 16, kv_tokens: 16384 }
    }
}

/// What a running sequence reports.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqEvent {
    /// A generated token and the text it released (maybe empty: held back, or a special token).
    Token { id: u32, text: String, logprobs: Option<TokenLogprobs> },
    /// The sequence ended; `text` is what was still held back (usually empty). `cached_tokens` of the
    /// prompt came from the prefix cache.
    Done {
        finish: FinishReason,
        text: String,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    /// The sequence failed; nothing follows.
    Error(String),
}

/// Where a sequence's events go.
pub trait EventSink: Send {
    /// Delivers one event; `false` when nobody listens any more.
    fn send(&self, event: SeqEvent) -> bool;
    /// Whether the listener is gone (the client disconnected): the sequence is then cancelled.
    fn is_closed(&self) -> bool;
}

impl EventSink for std::sync::mpsc::Sender<SeqEvent> {
    fn send(&self, event: SeqEvent) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// One generation request.
pub struct SeqRequest {
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Length, sampling, stop strings.
    pub params: GenerateParams,
    /// `Some(k)`: report each token's log-probability and the `k` best alternatives.
    pub top_logprobs: Option<usize>,
    /// When the request gives up (finishes with [`FinishReason::Timeout`]).
    pub deadline: Option<Instant>,
    /// Where events go.
    pub sink: Box<dyn EventSink>,
}

/// Live counters of one engine, read by the server's `/metrics` and queue bound.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Requests handed to the engine and not yet admitted (the submitter increments it).
    pub queued: AtomicUsize,
    /// Sequences running.
    pub running: AtomicUsize,
    /// KV blocks in use.
    pub kv_used_blocks: AtomicUsize,
    /// KV blocks in the pool.
    pub kv_total_blocks: AtomicUsize,
    /// Sequences preempted so far.
    pub preemptions: AtomicU64,
    /// Forward steps run so far.
    pub steps: AtomicU64,
    /// Sequences cancelled because their listener left.
    pub cancelled: AtomicU64,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: AtomicU64,
}

struct Seq {
    id: u64,
    tokens: Vec<u32>, // prompt + generated
    prompt_len: usize,
    computed: usize, // tokens whose keys and values are in the cache
    blocks: Vec<u32>,
    registered: usize, // leading blocks entered in the prefix cache
    cached_tokens: usize,
    sampler: Sampler,
    counts: TokenCounts,
    text: TextOutput,
    max_tokens: usize,
    top_logprobs: Option<usize>,
    deadline: Option<Instant>,
    sink: Box<dyn EventSink>,
    counted_in_queue: bool,
}

impl Seq {
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
    fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
    fn wants_logits(&self) -> bool {
        self.top_logprobs.is_some() || !self.sampler.is_greedy_without_penalties()
    }
}

/// One sequence's share of a step.
struct Chunk {
    seq: usize,
    len: usize,
    output: bool,
}

/// A model on a backend serving many sequences at once.
pub struct Scheduler {
    backend: Box<dyn Backend>,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    defaults: GenerationDefaults,
    pool: BlockPool,
    cfg: SchedulerConfig,
    context: usize,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    next_id: u64,
    gauges: Arc<Gauges>,
    logits: Vec<f32>, // [max_seqs, vocab]
    ids: Vec<u32>,    // [max_seqs]
}

impl Scheduler {
    /// Loads `files` onto `backend`, sized by `cfg`.
    pub fn new(
        mut backend: Box<dyn Backend>,
        files: ModelFiles,
        cfg: SchedulerConfig,
    ) -> Result<Scheduler, EngineError> {
        let context = files.config.max_context.max(1);
        let max_seqs = cfg.max_seqs.max(1);
        let block_size = cfg.block_size.max(1);
        let cfg = SchedulerConfig {
            max_seqs,
            max_step_tokens: cfg.max_step_tokens.max(max_seqs),
            block_size,
            kv_tokens: cfg.kv_tokens.max(context),
        };
        let sizing = ModelSizing {
            max_step_tokens: cfg.max_step_tokens,
            max_outputs: max_seqs,
            kv_blocks: cfg.kv_tokens.div_ceil(block_size),
            block_size,
        };
        let model = Model::load(backend.as_mut(), &files.config, &files.weights, sizing)?;
        let gauges = Arc::new(Gauges::default());
        gauges.kv_total_blocks.store(sizing.kv_blocks, Ordering::Relaxed);
        Ok(Scheduler {
            backend,
            logits: vec![0.0; max_seqs * files.config.vocab],
            ids: vec![0; max_seqs],
            model,
            tokenizer: Arc::new(files.tokenizer),
            defaults: files.defaults,
            pool: BlockPool::new(sizing.kv_blocks, block_size),
            cfg,
            context,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            gauges,
        })
    }

    /// The tokenizer (shared with whoever prepares requests).
    pub fn tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer.clone()
    }
    /// The live counters.
    pub fn gauges(&self) -> Arc<Gauges> {
        self.gauges.clone()
    }
    /// Positions one sequence may use (prompt + generated).
    pub fn context(&self) -> usize {
        self.context
    }
    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }
    /// Sampling defaults of the model.
    pub fn defaults(&self) -> &GenerationDefaults {
        &self.defaults
    }
    /// The sizes in force.
    pub fn sizes(&self) -> SchedulerConfig {
        self.cfg
    }
    /// Name and device of the backend.
    pub fn backend_info(&self) -> crate::backend::BackendInfo {
        self.backend.info()
    }
    /// Whether no sequence is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Queues a request. Invalid requests (empty prompt, over the context, bad sampling parameters)
    /// get an `Error` event at once. `counted_in_queue`: the submitter incremented `Gauges::queued`.
    pub fn add(&mut self, req: SeqRequest, counted_in_queue: bool) {
        let fail = |req: SeqRequest, msg: String, gauges: &Gauges| {
            if counted_in_queue {
                gauges.queued.fetch_sub(1, Ordering::Relaxed);
            }
            req.sink.send(SeqEvent::Error(msg));
        };
        if let Err(e) = req.params.sampling.validate() {
            return fail(req, e.to_string(), &self.gauges);
        }
        let (prompt, max_tokens) = (req.prompt_ids.len(), req.params.max_tokens);
        if prompt == 0 {
            return fail(req, EngineError::EmptyPrompt.to_string(), &self.gauges);
        }
        if prompt + max_tokens > self.context {
            let e = EngineError::ContextOverflow { prompt, max_tokens, context: self.context };
            return fail(req, e.to_string(), &self.gauges);
        }
        let p = req.params;
        self.waiting.push_back(Seq {
            id: self.next_id,
            counts: TokenCounts::from_prompt(&req.prompt_ids),
            prompt_len: prompt,
            tokens: req.prompt_ids,
            computed: 0,
            blocks: Vec::new(),
            registered: 0,
            cached_tokens: 0,
            sampler: Sampler::new(p.sampling),
            text: TextOutput::new(&self.tokenizer, p.stop, p.ignore_eos),
            max_tokens,
            top_logprobs: req.top_logprobs,
            deadline: req.deadline,
            sink: req.sink,
            counted_in_queue,
        });
        self.next_id += 1;
    }

    /// Runs requests from `requests` until the channel closes and every sequence has finished.
    pub fn serve(mut self, requests: Receiver<SeqRequest>) {
        let mut open = true;
        while open || !self.is_idle() {
            if self.is_idle() {
                match requests.recv_timeout(Duration::from_millis(200)) {
                    Ok(req) => self.add(req, true),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            while let Ok(req) = requests.try_recv() {
                self.add(req, true);
            }
            self.step();
        }
    }

    /// One round: drops cancelled and timed-out sequences, admits waiting ones, runs one forward step
    /// over every running sequence and hands out the sampled tokens. Returns whether a step ran.
    pub fn step(&mut self) -> bool {
        self.reap();
        self.admit();
        if self.running.is_empty() {
            self.publish();
            return false;
        }
        if let Err(e) = self.advance() {
            tracing::error!(error = %e, "forward step failed; failing its sequences");
            for mut s in std::mem::take(&mut self.running) {
                self.pool.release(&mut s.blocks);
                s.sink.send(SeqEvent::Error(format!("engine error: {e}")));
            }
        }
        self.gauges.steps.fetch_add(1, Ordering::Relaxed);
        self.publish();
        true
    }

    fn publish(&self) {
        let g = &self.gauges;
        g.running.store(self.running.len(), Ordering::Relaxed);
        g.kv_used_blocks.store(self.pool.total_blocks() - self.pool.free_blocks(), Ordering::Relaxed);
    }

    /// Removes sequences whose client left (cancel) or whose deadline passed (finish as timeout).
    fn reap(&mut self) {
        let now = Instant::now();
        let expired = |s: &Seq| s.sink.is_closed() || s.deadline.is_some_and(|d| now >= d);
        let cancelled = self.running.iter().chain(&self.waiting).filter(|s| s.sink.is_closed()).count();
        self.gauges.cancelled.fetch_add(cancelled as u64, Ordering::Relaxed);
        let mut i = 0;
        while i < self.running.len() {
            if expired(&self.running[i]) {
                let s = self.running.remove(i);
                self.end(s, FinishReason::Timeout);
            } else {
                i += 1;
            }
        }
        let (keep, gone): (VecDeque<Seq>, VecDeque<Seq>) =
            std::mem::take(&mut self.waiting).into_iter().partition(|s| !expired(s));
        self.waiting = keep;
        for s in gone {
            if s.counted_in_queue {
                self.gauges.queued.fetch_sub(1, Ordering::Relaxed);
            }
            self.end(s, FinishReason::Timeout);
        }
    }

    /// Moves waiting sequences into the running set while there is a slot and room for their prompt.
    fn admit(&mut self) {
        while self.running.len() < self.cfg.max_seqs {
            let Some(s) = self.waiting.front() else { break };
            // Room for its tokens plus one block of growth per running sequence: admitting into a pool
            // with no headroom only leads to preempting someone a few steps later.
            let need = self.pool.blocks_for(s.tokens.len() + 1) + self.running.len();
            if !self.running.is_empty() && need > self.pool.free_blocks() {
                break;
            }
            let mut s = self.waiting.pop_front().expect("front exists");
            if std::mem::take(&mut s.counted_in_queue) {
                self.gauges.queued.fetch_sub(1, Ordering::Relaxed);
            }
            // Prefix cache: full blocks of known tokens already computed, leaving at least one token to
            // run (its logits give the next token).
            let bs = self.pool.block_size();
            let known = &s.tokens[..s.tokens.len() - 1];
            s.blocks = self.pool.lookup(super::kv_cache::block_keys(known, bs));
            s.computed = s.blocks.len() * bs;
            s.registered = s.blocks.len();
            if s.generated() == 0 {
                s.cached_tokens = s.computed;
                self.gauges.cached_tokens.fetch_add(s.computed as u64, Ordering::Relaxed);
            }
            self.running.push(s);
        }
        self.running.sort_by_key(|s| s.id);
    }

    /// Frees the newest running sequence's blocks and puts it back at the front of the queue.
    fn preempt_newest(&mut self) {
        let Some(victim) = (0..self.running.len()).max_by_key(|&i| self.running[i].id) else { return };
        let mut s = self.running.remove(victim);
        self.pool.release(&mut s.blocks);
        s.computed = 0;
        s.registered = 0;
        self.gauges.preemptions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq = s.id, tokens = s.tokens.len(), "KV cache full: preempted");
        self.waiting.push_front(s);
    }

    /// Chooses each running sequence's rows for this step (decoders first, then prefill chunks within
    /// the token budget) and makes sure their blocks exist, preempting when the pool is dry.
    fn plan(&mut self) -> Vec<Chunk> {
        'retry: loop {
            let mut order: Vec<usize> = (0..self.running.len()).collect();
            order.sort_by_key(|&i| (self.running[i].pending() > 1, self.running[i].id));
            let mut budget = self.cfg.max_step_tokens;
            let mut chunks = Vec::with_capacity(order.len());
            for i in order {
                let s = &mut self.running[i];
                let pending = s.pending();
                let len = pending.min(budget);
                if len == 0 {
                    continue;
                }
                if self.pool.ensure(&mut s.blocks, s.computed + len).is_err() {
                    self.preempt_newest();
                    continue 'retry;
                }
                budget -= len;
                chunks.push(Chunk { seq: i, len, output: len == pending });
            }
            return chunks;
        }
    }

    /// Builds and runs one forward step, then samples and delivers a token for every sequence whose
    /// last pending row was in it.
    fn advance(&mut self) -> Result<(), EngineError> {
        let chunks = self.plan();
        let mut step = StepBatch::default();
        let mut outputs = Vec::new(); // (running index, output row)
        for (k, c) in chunks.iter().enumerate() {
            let s = &self.running[c.seq];
            step.tokens.extend_from_slice(&s.tokens[s.computed..s.computed + c.len]);
            step.positions.extend((s.computed..s.computed + c.len).map(|p| p as u32));
            step.token_seq.extend(std::iter::repeat_n(k as u32, c.len));
            step.block_table_start.push(step.block_tables.len() as u32);
            step.block_table_len.push(s.blocks.len() as u32);
            step.block_tables.extend_from_slice(&s.blocks);
            if c.output {
                step.output_rows.push(step.tokens.len() as u32 - 1);
                outputs.push(c.seq);
            }
        }
        let span = tracing::debug_span!(
            "step",
            tokens = step.n_tokens(),
            seqs = chunks.len(),
            outputs = outputs.len()
        );
        let _entered = span.enter();
        self.model.forward(self.backend.as_mut(), &step)?;
        let bs = self.pool.block_size();
        for c in &chunks {
            let s = &mut self.running[c.seq];
            s.computed += c.len;
            // Blocks now full of computed tokens join the prefix cache.
            let full = s.computed / bs;
            if full > s.registered {
                let keys: Vec<u64> = super::kv_cache::block_keys(&s.tokens[..full * bs], bs).collect();
                for (i, key) in keys.into_iter().enumerate().skip(s.registered) {
                    self.pool.register(s.blocks[i], key);
                }
                s.registered = full;
            }
        }
        if outputs.is_empty() {
            return Ok(());
        }

        let n = outputs.len();
        let vocab = self.model.cfg.vocab;
        let need_logits = outputs.iter().any(|&i| self.running[i].wants_logits());
        if need_logits {
            self.model.read_logits(self.backend.as_mut(), &mut self.logits[..n * vocab])?;
        } else {
            self.model.read_argmax(self.backend.as_mut(), &mut self.ids[..n])?;
        }
        let mut finished = Vec::new();
        for (row, &i) in outputs.iter().enumerate() {
            let s = &mut self.running[i];
            let (id, lp) = if need_logits {
                let logits = &mut self.logits[row * vocab..(row + 1) * vocab];
                let raw = s.top_logprobs.map(|_| logits.to_vec());
                let id = match s.sampler.try_sample(logits, &s.counts) {
                    Ok(id) => id,
                    Err(e) => {
                        s.sink.send(SeqEvent::Error(e.to_string()));
                        finished.push((i, None));
                        continue;
                    }
                };
                (id, raw.map(|r| logprobs(&r, id, s.top_logprobs.unwrap_or(0))))
            } else {
                (self.ids[row], None)
            };
            s.tokens.push(id);
            s.counts.add_generated(id);
            let (text, finish) = match s.text.push(&self.tokenizer, id) {
                Ok(r) => r,
                Err(e) => {
                    s.sink.send(SeqEvent::Error(e.to_string()));
                    finished.push((i, None));
                    continue;
                }
            };
            s.sink.send(SeqEvent::Token { id, text, logprobs: lp });
            let finish = finish.or((s.generated() >= s.max_tokens).then_some(FinishReason::Length));
            if let Some(f) = finish {
                finished.push((i, Some(f)));
            }
        }
        finished.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (i, finish) in finished {
            let mut s = self.running.remove(i);
            match finish {
                Some(f) => self.end(s, f),
                None => self.pool.release(&mut s.blocks),
            }
        }
        Ok(())
    }

    /// Releases a sequence's blocks and tells its listener why it ended (with any held-back text).
    fn end(&mut self, mut s: Seq, finish: FinishReason) {
        self.pool.release(&mut s.blocks);
        self.publish(); // before the listener hears `Done`, so the gauges it may read next are current
        if s.sink.is_closed() {
            return;
        }
        let text = match s.text.flush(&self.tokenizer) {
            Ok(rest) => rest,
            Err(e) => {
                s.sink.send(SeqEvent::Error(e.to_string()));
                return;
            }
        };
        let completion_tokens = s.generated();
        let (prompt_tokens, cached_tokens) = (s.prompt_len, s.cached_tokens);
        s.sink.send(SeqEvent::Done { finish, text, prompt_tokens, completion_tokens, cached_tokens });
    }
}
