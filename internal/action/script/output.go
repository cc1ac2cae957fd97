package script

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
)

// maxLine is the longest output line logged as one record; the rest of a
// longer line is dropped (and counted). It also bounds the read buffer.
const maxLine = 4096

// readStream logs what a script writes to one stream, line by line, at
// most max bytes, and discards (but counts) the rest. Memory use is bounded
// by maxLine plus max, however much the script writes. It returns at EOF
// or when a read deadline set on f expires.
func readStream(f *os.File, stream string, max int64, log *slog.Logger) {
	ctx := context.Background()
	br := bufio.NewReaderSize(f, maxLine)
	var logged, dropped int64
	cutting := false // inside an overlong line whose head was logged
	for {
		if logged >= max {
			n, _ := io.Copy(io.Discard, br) // bounded buffers, no growth
			dropped += n
			break
		}
		line, err := br.ReadSlice('\n')
		if n := int64(len(line)); n > 0 {
			switch {
			case cutting:
				dropped += n
			default:
				keep := min(n, max-logged)
				logged += keep
				dropped += n - keep
				text := line[:keep]
				for len(text) > 0 && (text[len(text)-1] == '\n' || text[len(text)-1] == '\r') {
					text = text[:len(text)-1]
				}
				attrs := []slog.Attr{slog.String("stream", stream), slog.String("line", string(text))}
				if keep < n || errors.Is(err, bufio.ErrBufferFull) {
					attrs = append(attrs, slog.Bool("cut", true))
				}
				log.LogAttrs(ctx, slog.LevelInfo, "script output", attrs...)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				cutting = true
			} else if err == nil {
				cutting = false
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break // EOF, or the read deadline that stops reading
		}
	}
	if dropped > 0 {
		log.LogAttrs(ctx, slog.LevelInfo, "script output truncated",
			slog.String("stream", stream),
			slog.Int64("logged_bytes", logged),
			slog.Int64("dropped_bytes", dropped))
	}
}
