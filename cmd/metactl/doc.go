// Command metactl is the command-line client of a meta cluster.
//
// Exit status is 0 on success and 1 with a one-line error otherwise.
package main
