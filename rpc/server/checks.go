package server

// checkRequired checks a required request field: not empty, and at most
// maxBytes bytes.
func checkRequired[S ~string | ~[]byte](field string, v S, maxBytes int) error {
	if len(v) == 0 {
		return invalid(field, "must not be empty")
	}
	return checkMaxBytes(field, v, maxBytes)
}

// checkMaxBytes checks that a request field has at most maxBytes bytes.
func checkMaxBytes[S ~string | ~[]byte](field string, v S, maxBytes int) error {
	if len(v) > maxBytes {
		return invalid(field, "%d bytes, at most %d", len(v), maxBytes)
	}
	return nil
}

// checkBatchLen checks the number of entries, n, of a batch call's
// repeated field: at least one, at most maxEntries.
func checkBatchLen(field string, n, maxEntries int) error {
	if n == 0 {
		return invalid(field, "must not be empty")
	}
	if n > maxEntries {
		return invalid(field, "%d entries, at most %d", n, maxEntries)
	}
	return nil
}
