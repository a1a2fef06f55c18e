# Chart of one scripts/bench.sh run, from the matrices bench/lib/aggregate.py
# writes under <outdir>/chart/ (scenario x peer, '?' = no figure).
#   gnuplot -e "outdir='bench/results/<run>'" bench/lib/chart.gp
if (!exists("outdir")) outdir = "."
dat(name) = outdir . "/chart/" . name . ".dat"

set terminal pngcairo size 1400,1000 font "sans,10"
set output outdir . "/chart.png"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key above horizontal maxrows 1 font ",8"
set xtics nomirror rotate by -15 font ",9"
set yrange [0:*]
set format y "%.0s%c"

# has_<figure> flags: which matrices hold any figure at all.
load outdir . "/chart/flags.gp"

set multiplot layout 2,2 title "Tidings and peers on loopback (medians; see summary.md for sizes and notes)"

set title "deliveries per second"
if (has_deliveries_per_s) { plot for [i=2:*] dat("deliveries_per_s") using i:xtic(1) title columnheader(i) } else { set label 1 "no figures in this run" at graph 0.5,0.5 center; plot [0:1] [0:1] 2 notitle with lines; unset label 1 }

set title "deliveries per server CPU-second"
if (has_deliveries_per_cpu_s) { plot for [i=2:*] dat("deliveries_per_cpu_s") using i:xtic(1) title columnheader(i) } else { set label 1 "no figures in this run" at graph 0.5,0.5 center; plot [0:1] [0:1] 2 notitle with lines; unset label 1 }

set title "p99 publish-to-receive latency, ms (log scale)"
set logscale y
set yrange [*:*]
set format y "%g"
if (has_latency_p99_ms) { plot for [i=2:*] dat("latency_p99_ms") using i:xtic(1) title columnheader(i) } else { set label 1 "no figures in this run" at graph 0.5,0.5 center; plot [0:1] [0:1] 2 notitle with lines; unset label 1 }
unset logscale y
set yrange [0:*]

set format y "%g"
# PSS counts pages shared by nginx's processes once; RSS where no PSS.
if (has_pss_per_conn_bytes) {
  set title "server PSS per idle connection, KiB"
  plot for [i=2:*] dat("pss_per_conn_bytes") using i:xtic(1) title columnheader(i)
} else { if (has_rss_per_conn_bytes) {
  set title "server RSS per idle connection, KiB"
  plot for [i=2:*] dat("rss_per_conn_bytes") using i:xtic(1) title columnheader(i)
} else { set label 1 "no figures in this run" at graph 0.5,0.5 center; plot [0:1] [0:1] 2 notitle with lines; unset label 1 } }

unset multiplot
