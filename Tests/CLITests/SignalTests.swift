// The real `spool` binary started by /bin/sh, as make, CI and init scripts start it: stop
// signals at any moment of start-up give a graceful stop, never a death by the default
// action and never a hang; a cancelled transcode leaves nothing behind; a process started
// with closed standard descriptors or a vanished reader fails cleanly.
import Foundation
import SpoolTestSupport
import XCTest

final class SignalTests: XCTestCase {
    /// `spool` beside the test bundle (both are built into .build/debug).
    private func spoolBinary() throws -> String {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("spool").path
        guard FileManager.default.isExecutableFile(atPath: bin) else { throw XCTSkip("spool not built next to the tests") }
        return bin
    }

    /// A shell function for the scripts below: `listening_port LOG PID` waits (up to 10 s)
    /// for the "serving http://127.0.0.1:PORT/api/v1" line `spool serve` writes to LOG and
    /// sets `port`; if none comes, it prints the log, kills PID and fails the script.
    private static let listeningPort = #"""
    listening_port() {
        port=""; t=0
        while [ -z "$port" ] && [ $t -lt 1000 ]; do port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/api/v1.*|\1|p' "$1"); sleep 0.01; t=$((t + 1)); done
        [ -n "$port" ] || { echo "never listened: $(cat "$1")"; kill -9 $2; exit 1; }
    }

    """#

    private func scratch(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "spool-cli-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Starts `spool serve` RUNS times as a background job of a non-interactive /bin/sh
    /// and sends SIG the moment MODE says: `health` (the first answered health check) or
    /// `masked` (as soon as /proc/PID/status shows the signal blocked or caught by the
    /// spool image, usually long before it listens). Every run must exit 0 having printed
    /// "spool: stopped"; a run still alive 15 s after the signal counts as hung (killed).
    private func serveAndSignal(mode: String, signal: String, runs: Int) throws {
        let spool = try spoolBinary()
        let dir = try scratch("\(mode)-\(signal)")
        let script = #"""
        spool="$1"; dir="$2"; mode="$3"; sig="$4"; n="$5"
        spool_real=$(readlink -f "$spool")
        case "$sig" in INT) bit=2 ;; TERM) bit=16384 ;; HUP) bit=1 ;; esac
        exited() { s=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ]; }
        i=0; fails=0
        while [ $i -lt "$n" ]; do
          i=$((i + 1)); log="$dir/serve-$i.log"
          "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --loops 1 >"$log" 2>&1 &
          pid=$!
          t=0; ready=0
          while [ $t -lt 1000 ] && ! exited $pid; do
            if [ "$mode" = health ]; then
              port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/api/v1.*|\1|p' "$log")
              if [ -n "$port" ] && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/api/v1/health"; then ready=1; break; fi
            elif [ "$(readlink /proc/$pid/exe 2>/dev/null)" = "$spool_real" ]; then
              blk=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$pid/status 2>/dev/null)
              cgt=$(sed -n 's/^SigCgt:[[:space:]]*//p' /proc/$pid/status 2>/dev/null)
              if [ -n "$blk" ] && [ -n "$cgt" ] && [ $(( (0x$blk | 0x$cgt) & bit )) -ne 0 ]; then ready=1; break; fi
            fi
            sleep 0.01; t=$((t + 1))
          done
          kill -s "$sig" $pid 2>/dev/null
          t=0
          while ! exited $pid && [ $t -lt 1500 ]; do sleep 0.01; t=$((t + 1)); done
          if ! exited $pid; then
            kill -9 $pid; wait $pid
            echo "run $i: HUNG 15 s after SIG$sig: $(tr '\n' ' ' < "$log")"; fails=$((fails + 1)); continue
          fi
          wait $pid; rc=$?
          if [ $ready = 1 ] && [ $rc = 0 ] && grep -q '^spool: stopped' "$log"; then :; else
            echo "run $i: ready=$ready exit=$rc: $(tr '\n' ' ' < "$log")"; fails=$((fails + 1))
          fi
        done
        echo "runs=$n failures=$fails"
        """#
        let (status, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir, mode, signal, String(runs)])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("runs=\(runs) failures=0"), output)
    }

    func testSIGTERMAsSoonAsHealthAnswersDrainsAndExitsZero() throws {
        try serveAndSignal(mode: "health", signal: "TERM", runs: 50)
    }

    func testSIGTERMAsSoonAsTheSignalIsCaughtStillStopsGracefully() throws {
        try serveAndSignal(mode: "masked", signal: "TERM", runs: 50)
    }

    /// A non-interactive shell starts background jobs with SIGINT ignored; the server
    /// handles it regardless (as nginx and PostgreSQL do).
    func testSIGINTFromABackgroundJobOfAShellIsHandled() throws {
        try serveAndSignal(mode: "health", signal: "INT", runs: 50)
    }

    func testSIGINTAsSoonAsTheSignalIsCaughtStillStopsGracefully() throws {
        try serveAndSignal(mode: "masked", signal: "INT", runs: 50)
    }

    /// SIGQUIT quits a server at once (its default action, status 131 from a shell), also
    /// when it was started with SIGQUIT ignored, as a non-interactive shell starts its
    /// background jobs (an outside probe found such a server ignoring it).
    func testSIGQUITQuitsAtOnceEvenWhenStartedIgnored() throws {
        let spool = try spoolBinary()
        let dir = try scratch("quit")
        let script = Self.listeningPort + #"""
        spool="$1"; dir="$2"; log="$dir/serve.log"
        ulimit -c 0
        trap '' QUIT
        "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --loops 1 --insecure-no-auth >"$log" 2>&1 &
        pid=$!
        trap - QUIT
        listening_port "$log" $pid
        kill -QUIT $pid
        t=0; while kill -0 $pid 2>/dev/null && [ $t -lt 500 ]; do sleep 0.01; t=$((t + 1)); done
        if kill -0 $pid 2>/dev/null; then echo "still running 5 s after SIGQUIT"; kill -9 $pid; wait $pid; exit 1; fi
        wait $pid; echo "status=$?"
        """#
        let (status, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("status=131"), output)
    }

    /// SIGHUP reloads the configuration file: a reloadable key takes effect, a key that
    /// needs a restart is kept out (and logged), a broken file is refused while the server
    /// keeps its settings and keeps serving; SIGTERM then still drains and exits 0.
    func testSIGHUPReloadsTheConfigurationAndTheServerKeepsServing() throws {
        let spool = try spoolBinary()
        let dir = try scratch("hup")
        let script = Self.listeningPort + #"""
        spool="$1"; dir="$2"; log="$dir/serve.log"; conf="$dir/spool.json"
        printf '{"jobs":{"max_attempts":3},"loops":1,"http":{"json_body_max_bytes":1024}}' > "$conf"
        "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --config "$conf" --insecure-no-auth >"$log" 2>&1 &
        pid=$!
        listening_port "$log" $pid
        waitlog() { t=0; while [ "$(grep -c "$1" "$log")" -lt "${2:-1}" ] && [ $t -lt 500 ]; do sleep 0.01; t=$((t + 1)); done; [ "$(grep -c "$1" "$log")" -ge "${2:-1}" ] || { echo "missing in log: $1"; cat "$log"; kill -9 $pid; exit 1; }; }
        # A 2,000-byte job body: over the 1 KiB JSON limit (413), then under the reloaded one (422, its field unknown).
        printf '{"pad":"%s"}' "$(head -c 2000 /dev/zero | tr '\0' x)" > "$dir/big.json"
        post() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Idempotency-Key: k' --data-binary @"$dir/big.json" "http://127.0.0.1:$port/api/v1/jobs"; }
        code=$(post); [ "$code" = 413 ] || { echo "before the reload: $code"; kill -9 $pid; exit 1; }
        printf '{"jobs":{"max_attempts":5},"loops":2,"http":{"json_body_max_bytes":1048576}}' > "$conf"
        kill -HUP $pid
        waitlog "now in effect: .*jobs.max_attempts"
        waitlog "loops changed from 1 to 2: needs a restart"
        code=$(post); [ "$code" = 422 ] || { echo "json_body_max_bytes not reloaded: $code"; kill -9 $pid; exit 1; }
        printf '{"jobs":{"max_attempts":0}' > "$conf"
        kill -HUP $pid
        waitlog "rejected; the current settings stay"
        # log_level takes effect: once it is error, a restart-only change's warning is not written.
        printf '{"jobs":{"max_attempts":5},"loops":3,"http":{"json_body_max_bytes":1048576},"log_level":"error"}' > "$conf"
        kill -HUP $pid
        waitlog "now in effect: log_level"
        printf '{"jobs":{"max_attempts":5},"loops":4,"http":{"json_body_max_bytes":1048576},"log_level":"error"}' > "$conf"
        kill -HUP $pid
        sleep 0.5   # that reload done (it writes nothing at this level) before the next file
        printf '{"jobs":{"max_attempts":0}' > "$conf"
        kill -HUP $pid
        waitlog "rejected; the current settings stay" 2
        if grep -q "loops changed from 1 to 4" "$log"; then echo "a warning written at log_level error"; cat "$log"; kill -9 $pid; exit 1; fi
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/api/v1/health" || { echo "not serving after SIGHUP"; kill -9 $pid; exit 1; }
        [ -s "$dir/data/server.url" ] || { echo "no server.url while serving"; kill -9 $pid; exit 1; }
        kill -TERM $pid; wait $pid; rc=$?
        grep -q '^spool: stopped' "$log" || { echo "no stop line: $(cat "$log")"; exit 1; }
        [ ! -e "$dir/data/server.url" ] || { echo "server.url left after the stop: $(cat "$dir/data/server.url")"; exit 1; }
        echo "rc=$rc"
        """#
        let (status, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("rc=0"), output)
    }

    /// One server per data directory: a second `spool serve` on a directory in use fails at
    /// once with a message naming the lock and exit 1, and the first keeps serving.
    func testASecondServerOnTheSameDataDirectoryIsRefused() throws {
        let spool = try spoolBinary()
        let dir = try scratch("twice")
        let script = Self.listeningPort + #"""
        spool="$1"; dir="$2"; log="$dir/first.log"
        "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --loops 1 >"$log" 2>&1 &
        pid=$!
        listening_port "$log" $pid
        timeout 20 "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --loops 1 >"$dir/second.log" 2>&1
        echo "second=$?"
        cat "$dir/second.log"
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/api/v1/health" && echo "first still serving"
        kill -TERM $pid; wait $pid; echo "first=$?"
        """#
        let (status, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("second=1"), output)
        XCTAssertTrue(output.contains("is in use by another process"), output)
        XCTAssertTrue(output.contains("first still serving"), output)
        XCTAssertTrue(output.contains("first=0"), output)
    }

    /// One server per port: a second `spool serve` told to listen on the port a first one
    /// serves (another data directory, so the directory lock does not stop it first) fails
    /// at once with EADDRINUSE named and exit 1, and every connection still reaches the
    /// first. Each of the first server's loops has a SO_REUSEPORT listener, which another
    /// process's SO_REUSEPORT socket could otherwise join and take connections from.
    func testASecondServerOnAPortInUseIsRefused() throws {
        let spool = try spoolBinary()
        let dir = try scratch("port")
        let script = Self.listeningPort + #"""
        spool="$1"; dir="$2"; log="$dir/first.log"
        "$spool" serve --listen 127.0.0.1:0 --data-dir "$dir/a" --loops 2 --insecure-no-auth >"$log" 2>&1 &
        pid=$!
        listening_port "$log" $pid
        for loops in 1 2; do
            timeout 20 "$spool" serve --listen "127.0.0.1:$port" --data-dir "$dir/b$loops" --loops $loops --insecure-no-auth >"$dir/second.log" 2>&1
            echo "second($loops)=$?"
            cat "$dir/second.log"
        done
        # The first server's files: a file uploaded to it is found by 20 new connections.
        id=$(curl -sf --max-time 5 -X POST --data-binary "only here" "http://127.0.0.1:$port/api/v1/files" | sed -n 's|.*"id":"\([^"]*\)".*|\1|p')
        found=0
        for i in $(seq 1 20); do curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/api/v1/files/$id" && found=$((found + 1)); done
        echo "found=$found"
        kill -TERM $pid; wait $pid; echo "first=$?"
        """#
        let (status, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("second(1)=1"), output)
        XCTAssertTrue(output.contains("second(2)=1"), output)
        XCTAssertTrue(output.contains("Address already in use"), output)
        XCTAssertTrue(output.contains("found=20"), output)
        XCTAssertTrue(output.contains("first=0"), output)
    }

    /// A transcode cancelled by SIGTERM (or SIGINT) mid-job exits 128 + the signal's
    /// number and leaves nothing in the output directory but the input.
    func testTranscodeCancelledBySignalExitsWithItsStatusAndRemovesPartialOutput() throws {
        let spool = try spoolBinary()
        let dir = try scratch("transcode")
        let input = dir + "/in.mp4"
        let (synth, synthOut) = try runProcess(spool, ["synthesize", input, "--seconds", "30", "--width", "640", "--height", "360", "--fps", "25"])
        XCTAssertEqual(synth, 0, synthOut)
        // HEVC at a slow speed keeps the job running well past the first progress line.
        let script = #"""
        spool="$1"; dir="$2"; sig="$3"
        mkdir -p "$dir/out"
        "$spool" transcode "$dir/in.mp4" "$dir/out/result.mp4" --preset custom --codec hevc --speed medium --threads 1 >"$dir/log" 2>&1 &
        pid=$!
        t=0
        while [ $t -lt 2000 ] && ! grep -q '^progress:' "$dir/log"; do sleep 0.01; t=$((t + 1)); done
        kill -s "$sig" $pid
        t=0
        while [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" != Z ] && [ -e /proc/$pid ] && [ $t -lt 2000 ]; do sleep 0.01; t=$((t + 1)); done
        wait $pid; echo "exit=$?"
        echo "left=$(ls -A "$dir/out" | tr '\n' ' ')"
        cat "$dir/log"
        """#
        for (signal, status) in [("TERM", 143), ("INT", 130)] {
            let (_, output) = try runProcess("/bin/sh", ["-c", script, "sh", spool, dir, signal])
            XCTAssertTrue(output.contains("exit=\(status)\n"), "SIG\(signal): \(output)")
            XCTAssertTrue(output.contains("left=\n"), "SIG\(signal) left files behind: \(output)")
            XCTAssertTrue(output.contains("cancelled"), "SIG\(signal): no word of the cancellation: \(output)")
        }
    }

    /// Started with stdout closed, a transcode to '-' must not write media into whatever
    /// descriptor happens to be 1 (before the fix: libdispatch's epoll descriptor). Media
    /// goes to /dev/null and the command succeeds.
    func testClosedStandardDescriptorsAreReopenedOnDevNull() throws {
        let spool = try spoolBinary()
        let dir = try scratch("closedfd")
        let input = dir + "/in.ts"
        let (synth, synthOut) = try runProcess(spool, ["synthesize", input, "--seconds", "1"])
        XCTAssertEqual(synth, 0, synthOut)
        let (status, output) = try runProcess("/bin/sh", ["-c",
            #""$1" transcode "$2" - --format mpegts >&- 2>"$3/err"; echo "exit=$?"; cat "$3/err""#,
            "sh", spool, input, dir])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(output.hasPrefix("exit=0\n"), output)
        // Every descriptor closed: version still runs and exits 0.
        let (v, vOut) = try runProcess("/bin/sh", ["-c", #""$1" version <&- >&- 2>&-; echo "exit=$?""#, "sh", spool])
        XCTAssertEqual(v, 0)
        XCTAssertEqual(vOut, "exit=0\n")
    }

    /// A reader that goes away is a broken-pipe error with a message and exit 1, never a
    /// silent death by SIGPIPE (141).
    func testClosedOutputPipeIsAnErrorNotSIGPIPE() throws {
        let spool = try spoolBinary()
        let dir = try scratch("epipe")
        let input = dir + "/in.ts"
        let (synth, synthOut) = try runProcess(spool, ["synthesize", input, "--seconds", "4"])
        XCTAssertEqual(synth, 0, synthOut)
        let (_, output) = try runProcess("/bin/bash", ["-c",
            #""$1" transcode "$2" - --format mpegts 2>"$3/err" | head -c 1000 >/dev/null; echo "exit=${PIPESTATUS[0]}"; cat "$3/err""#,
            "bash", spool, input, dir])
        XCTAssertTrue(output.hasPrefix("exit=1\n"), output)
        XCTAssertTrue(output.contains("spool transcode:"), output)
    }
}
