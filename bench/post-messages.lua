-- Non-streaming Anthropic Messages request for bench/run.sh, with the headers the anthropic SDK sends;
-- MODEL is replaced per target.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "sk-bench-1234"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.body = '{"model":"MODEL","max_tokens":64,"system":"You are a helpful assistant.","messages":[{"role":"user","content":"Say hello in one short sentence, please."}]}'
