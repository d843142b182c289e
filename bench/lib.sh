# Shared by the bench scripts (source it): free ports, and the address lines of a corecast
# config, so that a bench server never binds a default port (8080, 1935, 8081, UDP 9000) that a
# running corecast or another bench already holds.

# port_free PORT: nothing uses TCP or UDP PORT on this box.
port_free() { ! ss -Htaun "sport = :$1" | grep -q .; }

# free_port_block FIRST COUNT: prints the first port P >= FIRST with P .. P+COUNT-1 all free.
free_port_block() {
  local port=$1 count=$2 i
  while :; do
    for ((i = 0; i < count; i++)); do
      port_free $((port + i)) || break
    done
    if ((i == count)); then
      echo "$port"
      return
    fi
    port=$((port + count))
  done
}

# corecast_addresses BASE: config lines for playback on BASE, RTMP on BASE+1, the control API
# on BASE+2 and SRT (UDP) on BASE+3, all on 127.0.0.1.
corecast_addresses() {
  printf 'http = "127.0.0.1:%s"\nrtmp = "127.0.0.1:%s"\napi = "127.0.0.1:%s"\nsrt = "127.0.0.1:%s"\n' \
    "$1" $(($1 + 1)) $(($1 + 2)) $(($1 + 3))
}
