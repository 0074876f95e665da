-- OpenAI embeddings request for bench/run.sh: one text, base64 as the openai SDK asks by default, 512
-- dimensions; MODEL is replaced per target.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1234"
wrk.body = '{"model":"MODEL","input":"The quick brown fox jumps over the lazy dog.","encoding_format":"base64","dimensions":512}'
