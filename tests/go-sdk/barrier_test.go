package gosdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
)

var barrierStores = []string{"mysql", "postgres", "redis"}

// Duplicate request: TransIn does its work and commits, then answers 500; the coordinator
// calls it again and the barrier keeps the second call from doing the work twice.
func TestBarrierDuplicate(t *testing.T) {
	for _, store := range barrierStores {
		t.Run(store, func(t *testing.T) {
			needStore(t, store)
			from, to := newUsers(t)
			gid := newGid(t)
			script(gid, "TransIn", "ERROR_AFTER")
			saga := httpSaga(gid, &Req{Amount: 30, From: from, To: to, Store: store})
			saga.RetryInterval = 1
			noErr(t, "submit", saga.Submit())
			waitStatus(t, gid, "succeed", 15*time.Second)
			equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransIn"})
			wantBalances(t, store, from, to, 9970, 10030)
		})
	}
}

// Empty compensation: TransIn refuses before doing anything, its compensation then finds no
// action to undo and does nothing. Hanging request: TransIn's action arriving after the
// compensation is refused by the barrier too.
func TestBarrierEmptyCompensationAndHanging(t *testing.T) {
	for _, store := range barrierStores {
		t.Run(store, func(t *testing.T) {
			needStore(t, store)
			from, to := newUsers(t)
			gid := newGid(t)
			script(gid, "TransIn", dtmcli.ResultFailure)
			req := &Req{Amount: 30, From: from, To: to, Store: store}
			noErr(t, "submit", httpSaga(gid, req).Submit())
			waitStatus(t, gid, "failed", 10*time.Second)
			equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransInRevert", "TransOutRevert"})
			wantBalances(t, store, from, to, 10000, 10000)
			if store != "redis" {
				equal(t, "barrier rows of TransIn", barrierRows(t, store, gid, "02"), "action/compensate compensate/compensate")
			}

			// the action, late: the barrier answers it without doing the work
			body, _ := json.Marshal(req)
			url := fmt.Sprintf("%s/TransIn?gid=%s&trans_type=saga&branch_id=02&op=action", busiHTTP, gid)
			resp, err := http.Post(url, "application/json", bytes.NewReader(body))
			noErr(t, "late action", err)
			resp.Body.Close()
			wantBalances(t, store, from, to, 10000, 10000)
		})
	}
}

// The same over gRPC, with the barrier taken from the call's metadata.
func TestBarrierGrpc(t *testing.T) {
	needStore(t, "postgres")
	from, to := newUsers(t)
	gid := newGid(t)
	script(gid, "TransIn", "ERROR_AFTER")
	saga := grpcSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "postgres"})
	saga.RetryInterval = 1
	noErr(t, "submit", saga.Submit())
	waitStatus(t, gid, "succeed", 15*time.Second)
	equalList(t, "calls", namesOf(gid), []string{"TransOut", "TransIn", "TransIn"})
	wantBalances(t, "postgres", from, to, 9970, 10030)

	gid = newGid(t)
	script(gid, "TransIn", dtmcli.ResultFailure)
	noErr(t, "submit", grpcSaga(gid, &Req{Amount: 30, From: from, To: to, Store: "postgres"}).Submit())
	waitStatus(t, gid, "failed", 10*time.Second)
	equal(t, "barrier rows of TransIn", barrierRows(t, "postgres", gid, "02"), "action/compensate compensate/compensate")
	wantBalances(t, "postgres", from, to, 9970, 10030)
}
