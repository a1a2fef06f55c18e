has_deliveries_per_s = 1
has_deliveries_per_cpu_s = 1
has_latency_p50_ms = 1
has_latency_p99_ms = 1
has_rss_per_conn_bytes = 1
has_pss_per_conn_bytes = 1
