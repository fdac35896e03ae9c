# Sourced by the benchmark scripts: settings, GNU time, a release build of
# the binaries named in $BUILD, and the canonical input file in page cache.
# The file comes from ../shared/bench/gen_customers.py when it exists (the
# project's reference generator), otherwise from the in-project generator of
# the same shape (examples/gen_customers.rs).
ROWS=${ROWS:-9560000}
SEED=${SEED:-42}
DATA_DIR=${DATA_DIR:-target/bench-data}
FILE="$DATA_DIR/customers-$ROWS-$SEED.csv"
MAPPING=testdata/customers.mapping.json
TIME=/usr/bin/time

if [ ! -x "$TIME" ]; then
  echo "$0 needs GNU time at $TIME (Debian: apt-get install time)" >&2
  exit 1
fi

# shellcheck disable=SC2086 # $BUILD is a list of cargo arguments
cargo build --release --quiet --bin sluice --example gen_customers $BUILD
BIN=${CARGO_TARGET_DIR:-target}/release

mkdir -p "$DATA_DIR"
if [ ! -s "$FILE" ]; then
  gen=../shared/bench/gen_customers.py
  if [ -f "$gen" ]; then
    echo "generating $FILE with $gen" >&2
    python3 "$gen" --rows "$ROWS" --seed "$SEED" --out "$FILE"
  else
    echo "generating $FILE with examples/gen_customers.rs" >&2
    "$BIN/examples/gen_customers" --rows "$ROWS" --seed "$SEED" --out "$FILE"
  fi
fi
cat "$FILE" > /dev/null   # into the page cache
