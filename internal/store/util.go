package store

import (
	"sort"
	"strconv"
)

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func sortDesc(ids []string) { sort.Sort(sort.Reverse(sort.StringSlice(ids))) }
