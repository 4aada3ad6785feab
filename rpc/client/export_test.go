package client

// StopFollowing stops c following the directory (its map stays as it is
// until an answer teaches it another): a client pinned to an old map.
func StopFollowing(c *Client) {
	c.follow()
	<-c.followed
}

// DataRoute is the data group c routes key to by its map, and the map's
// version.
func DataRoute(c *Client, key []byte) (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routerLocked().DataGroup(key), c.dataVersion
}

// HasRanges reports whether c routes data keys by a range map.
func HasRanges(c *Client) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dataRanges != nil
}
