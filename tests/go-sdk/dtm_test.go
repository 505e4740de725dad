package gosdk

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
)

// Trans is what the coordinator's query API (GET /query?gid=) tells of a transaction.
type Trans struct {
	Transaction struct {
		Gid            string `json:"gid"`
		Status         string `json:"status"`
		TransType      string `json:"trans_type"`
		Protocol       string `json:"protocol"`
		RollbackReason string `json:"rollback_reason"`
		Result         string `json:"result"`
	} `json:"transaction"`
	Branches []struct {
		BranchID string `json:"branch_id"`
		Op       string `json:"op"`
		Status   string `json:"status"`
		URL      string `json:"url"`
	} `json:"branches"`
}

func query(t *testing.T, gid string) *Trans {
	t.Helper()
	trans := &Trans{}
	resp, err := dtmcli.GetRestyClient().R().SetResult(trans).Get(dtmHTTP + "/query?gid=" + url.QueryEscape(gid))
	if err != nil || resp.StatusCode() != http.StatusOK {
		t.Fatalf("query %s: %v %s", gid, err, resp)
	}
	return trans
}

// waitStatus waits until gid has status (at most `within`) and returns what the query API says.
func waitStatus(t *testing.T, gid, status string, within time.Duration) *Trans {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		trans := query(t, gid)
		if trans.Transaction.Status == status {
			return trans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after %v, not %q: %s; calls %v", gid, trans.Transaction.Status, within, status,
				dump(trans), namesOf(gid))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// branchStatuses lists "branch_id/op:status" of each branch record.
func branchStatuses(trans *Trans) []string {
	s := []string{}
	for _, b := range trans.Branches {
		s = append(s, fmt.Sprintf("%s/%s:%s", b.BranchID, b.Op, b.Status))
	}
	return s
}

func newGid(t *testing.T) string {
	t.Helper()
	return dtmcli.MustGenGid(dtmHTTP)
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func equalList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
