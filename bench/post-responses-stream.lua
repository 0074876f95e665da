-- Streaming OpenAI Responses request for bench/run.sh (stateless, as Codex CLI sends it); MODEL is
-- replaced per target.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1234"
wrk.body = '{"model":"MODEL","stream":true,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello."}]}],"store":false,"max_output_tokens":64}'
