-- Non-streaming OpenAI Responses request for bench/run.sh (stateless, as Codex CLI sends it); MODEL is
-- replaced per target.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1234"
wrk.body = '{"model":"MODEL","instructions":"You are a helpful assistant.","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello in one short sentence, please."}]}],"store":false,"max_output_tokens":64}'
