package gosdk

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
)

// Req is the business request of every branch: move Amount from user From to user To, with the
// balances kept in Store ("mysql", "postgres", "redis", or "" for none: the branch is only
// recorded).
type Req struct {
	Amount int64  `json:"amount"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
	Store  string `json:"store"`
}

// Call is one request that a business service received.
type Call struct {
	Name     string // TransOut, TransInRevert, …
	Gid      string
	BranchID string
	Op       string
	Headers  map[string]string
	Start    time.Time
	End      time.Time
}

// The scripted results: for a gid and a branch name, the results of its next calls in order
// (SUCCESS when none is left). Besides dtm's SUCCESS, FAILURE and ONGOING: ERROR (HTTP 500 /
// gRPC Internal, the work not done), ERROR_AFTER (the work done and committed, then 500) and
// HANG (no answer until the caller goes away).
var (
	scriptMu sync.Mutex
	scripts  = map[string][]string{}
	callsMu  sync.Mutex
	calls    = map[string][]Call{}
)

func script(gid, name string, results ...string) {
	scriptMu.Lock()
	defer scriptMu.Unlock()
	scripts[gid+"/"+name] = append(scripts[gid+"/"+name], results...)
}

func nextResult(gid, name string) string {
	scriptMu.Lock()
	defer scriptMu.Unlock()
	queue := scripts[gid+"/"+name]
	if len(queue) == 0 {
		return dtmcli.ResultSuccess
	}
	scripts[gid+"/"+name] = queue[1:]
	return queue[0]
}

func record(c Call) {
	callsMu.Lock()
	defer callsMu.Unlock()
	calls[c.Gid] = append(calls[c.Gid], c)
}

// callsOf returns the calls of gid, in the order they arrived.
func callsOf(gid string) []Call {
	callsMu.Lock()
	defer callsMu.Unlock()
	return append([]Call(nil), calls[gid]...)
}

// namesOf is "Name/op" of each call of gid, in order.
func namesOf(gid string) []string {
	names := []string{}
	for _, c := range callsOf(gid) {
		names = append(names, c.Name)
	}
	return names
}

var errScripted = errors.New("scripted error")

func scriptedError(result string) error {
	switch result {
	case dtmcli.ResultFailure:
		return fmt.Errorf("scripted refusal %w", dtmcli.ErrFailure)
	case dtmcli.ResultOngoing:
		return dtmcli.ErrOngoing
	case "ERROR":
		return errScripted
	}
	return nil
}

// delta is how branch `name` changes the balances of req: (user, amount).
func delta(name string, req *Req) (int64, int64, bool) {
	switch name {
	case "TransOut", "TransOutTry", "XaTransOut":
		return req.From, -req.Amount, true
	case "TransOutRevert", "TransOutCancel":
		return req.From, req.Amount, true
	case "TransIn", "TransInConfirm", "XaTransIn":
		return req.To, req.Amount, true
	case "TransInRevert":
		return req.To, -req.Amount, true
	}
	return 0, 0, false // confirms and tries without a balance change
}

// busiWork runs branch `name` of a transaction: the scripted result, and the balance change
// under the branch barrier bb in req.Store.
func busiWork(ctx context.Context, name string, bb *dtmcli.BranchBarrier, req *Req) error {
	result := nextResult(bb.Gid, name)
	if result == "HANG" { // answer only when the caller has gone
		record(Call{Name: name + "-hang", Gid: bb.Gid, BranchID: bb.BranchID, Op: bb.Op, Start: time.Now()})
		<-ctx.Done()
		return ctx.Err()
	}
	if err := scriptedError(result); err != nil {
		return err
	}
	user, amount, _ := delta(name, req)
	var err error
	switch req.Store {
	case "":
	case "redis":
		bb.DBType = dtmimp.DBTypeRedis
		err = bb.RedisCheckAdjustAmount(rdb, redisKey(user), int(amount), 86400)
	default:
		db, dbType := storeDB(req.Store)
		bb.DBType = dtmcli.DBTypeMysql
		if dbType == dtmcli.DBTypePostgres {
			bb.DBType = dtmcli.DBTypePostgres
		}
		err = bb.CallWithDB(db, func(tx *sql.Tx) error {
			return adjust(tx, dbType, user, amount)
		})
	}
	if err == nil && result == "ERROR_AFTER" {
		err = errScripted
	}
	return err
}

func storeDB(store string) (*sql.DB, string) {
	switch store {
	case "mysql":
		return mysqlDB, dtmcli.DBTypeMysql
	case "postgres":
		return pgDB, dtmcli.DBTypePostgres
	}
	panic("unknown store " + store)
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

// adjust adds amount to user's balance; FAILURE when the balance would go below zero.
func adjust(tx execer, dbType string, user, amount int64) error {
	if amount == 0 {
		return nil
	}
	q := "UPDATE " + scope + ".user_account SET balance = balance + ? WHERE user_id = ? AND balance + ? >= 0"
	if dbType == dtmcli.DBTypePostgres {
		q = "UPDATE " + scope + ".user_account SET balance = balance + $1 WHERE user_id = $2 AND balance + $3 >= 0"
	}
	r, err := tx.Exec(q, amount, user, amount)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("insufficient balance of user %d %w", user, dtmcli.ErrFailure)
	}
	return nil
}

func redisKey(user int64) string {
	return fmt.Sprintf("%s:balance:%d", scope, user)
}

var nextUser atomic.Int64

// newUsers makes two accounts with balance 10000 in every store there is.
func newUsers(t *testing.T) (int64, int64) {
	t.Helper()
	from, to := nextUser.Add(2)-1, nextUser.Load()
	for _, user := range []int64{from, to} {
		if mysqlDB != nil {
			_, err := mysqlDB.Exec("INSERT INTO "+scope+".user_account VALUES (?, 10000)", user)
			must(err)
		}
		if pgDB != nil {
			_, err := pgDB.Exec("INSERT INTO "+scope+".user_account VALUES ($1, 10000)", user)
			must(err)
		}
		if rdb != nil {
			must(rdb.Set(context.Background(), redisKey(user), 10000, 0).Err())
		}
	}
	return from, to
}

func balance(t *testing.T, store string, user int64) int64 {
	t.Helper()
	var b int64
	var err error
	switch store {
	case "redis":
		b, err = rdb.Get(context.Background(), redisKey(user)).Int64()
	case "mysql":
		err = mysqlDB.QueryRow("SELECT balance FROM "+scope+".user_account WHERE user_id = ?", user).Scan(&b)
	case "postgres":
		err = pgDB.QueryRow("SELECT balance FROM "+scope+".user_account WHERE user_id = $1", user).Scan(&b)
	}
	if err != nil {
		t.Fatalf("balance of %d in %s: %v", user, store, err)
	}
	return b
}

// wantBalances waits (a little: branch calls may still be on their way) until the two users
// have these balances in store.
func wantBalances(t *testing.T, store string, from, to, fromWant, toWant int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, g := balance(t, store, from), balance(t, store, to)
		if f == fromWant && g == toWant {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balances in %s: %d and %d, want %d and %d", store, f, g, fromWant, toWant)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// needStore skips the test when the store's server was not given.
func needStore(t *testing.T, store string) {
	t.Helper()
	if store == "mysql" && mysqlDB == nil || store == "postgres" && pgDB == nil || store == "redis" && rdb == nil {
		t.Skipf("no %s server given", store)
	}
}

// --- HTTP ---

func httpRoutes() http.Handler {
	mux := http.NewServeMux()
	for _, name := range []string{"TransOut", "TransOutRevert", "TransIn", "TransInRevert",
		"TransOutTry", "TransOutConfirm", "TransOutCancel", "TransInTry", "TransInConfirm", "TransInCancel",
		"TransInNestedConfirm", "TransInNestedCancel"} {
		mux.HandleFunc("/api/busi/"+name, httpBranch(name))
	}
	mux.HandleFunc("/api/busi/TransInTccNested", httpTccNested)
	mux.HandleFunc("/api/busi/QueryPrepared", httpQueryPrepared)
	mux.HandleFunc("/api/busi/XaTransOut", httpXa("XaTransOut"))
	mux.HandleFunc("/api/busi/XaTransIn", httpXa("XaTransIn"))
	mux.HandleFunc("/api/busi/workflow/resume", httpWorkflowResume)
	return mux
}

// writeResult answers as dtm's business services do: 200 SUCCESS, 409 FAILURE, 425 ONGOING,
// 500 for any other error.
func writeResult(w http.ResponseWriter, err error) {
	code, body := dtmcli.Result2HttpJSON(err)
	if err == nil {
		body = dtmcli.MapSuccess
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func readReq(r *http.Request) (*Req, error) {
	req := &Req{}
	body, err := io.ReadAll(r.Body)
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, req)
	}
	return req, err
}

func headersOf(r *http.Request) map[string]string {
	h := map[string]string{}
	for k, v := range r.Header {
		h[strings.ToLower(k)] = strings.Join(v, ",")
	}
	return h
}

func httpBranch(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := Call{Name: name, Gid: r.URL.Query().Get("gid"), BranchID: r.URL.Query().Get("branch_id"),
			Op: r.URL.Query().Get("op"), Headers: headersOf(r), Start: time.Now()}
		req, err := readReq(r)
		var bb *dtmcli.BranchBarrier
		if err == nil {
			bb, err = dtmcli.BarrierFromQuery(r.URL.Query())
		}
		if err == nil {
			err = busiWork(r.Context(), name, bb, req)
		}
		c.End = time.Now()
		record(c)
		writeResult(w, err)
	}
}

// httpTccNested is a TCC try that calls a TCC branch of its own (branch id 0201 under 02).
func httpTccNested(w http.ResponseWriter, r *http.Request) {
	record(Call{Name: "TransInTccNested", Gid: r.URL.Query().Get("gid"), BranchID: r.URL.Query().Get("branch_id"),
		Op: r.URL.Query().Get("op"), Start: time.Now()})
	req, err := readReq(r)
	var tcc *dtmcli.Tcc
	if err == nil {
		tcc, err = dtmcli.TccFromQuery(r.URL.Query())
	}
	if err == nil {
		_, err = tcc.CallBranch(req, busiHTTP+"/TransInTry", busiHTTP+"/TransInConfirm", busiHTTP+"/TransInCancel")
	}
	writeResult(w, err)
}

// httpQueryPrepared is a msg's check-back: whether the local transaction of DoAndSubmit
// committed (?store=mysql|postgres|redis).
func httpQueryPrepared(w http.ResponseWriter, r *http.Request) {
	record(Call{Name: "QueryPrepared", Gid: r.URL.Query().Get("gid"), Op: r.URL.Query().Get("op"), Start: time.Now()})
	bb, err := dtmcli.BarrierFromQuery(r.URL.Query())
	if err == nil {
		err = queryPrepared(bb, r.URL.Query().Get("store"))
	}
	writeResult(w, err)
}

func queryPrepared(bb *dtmcli.BranchBarrier, store string) error {
	if store == "redis" {
		return bb.RedisQueryPrepared(rdb, 86400)
	}
	db, dbType := storeDB(store)
	bb.DBType = dtmcli.DBTypeMysql
	if dbType == dtmcli.DBTypePostgres {
		bb.DBType = dtmcli.DBTypePostgres
	}
	return bb.QueryPrepared(db)
}

// httpXa is an XA branch on ?store=mysql|postgres; the coordinator calls the same URL (with an
// empty body) to commit or roll back.
func httpXa(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		record(Call{Name: name, Gid: q.Get("gid"), BranchID: q.Get("branch_id"), Op: q.Get("op"), Start: time.Now()})
		req, err := readReq(r)
		if err == nil {
			err = xaBranch(name, q.Get("store"), req, func(conf dtmcli.DBConf, local func(db *sql.DB) error) error {
				return dtmcli.XaLocalTransaction(q, conf, func(db *sql.DB, xa *dtmcli.Xa) error {
					return local(db)
				})
			})
		}
		writeResult(w, err)
	}
}

// xaBranch runs an XA branch's local work with `run` (the SDK's XaLocalTransaction).
func xaBranch(name, store string, req *Req, run func(dtmcli.DBConf, func(*sql.DB) error) error) error {
	var conf *dtmcli.DBConf
	switch store {
	case "mysql":
		conf = mysqlConf
	case "postgres":
		conf = pgConf
	default:
		return fmt.Errorf("xa needs a database store, not %q", store)
	}
	user, amount, _ := delta(name, req)
	return run(*conf, func(db *sql.DB) error {
		return adjust(db, conf.Driver, user, amount)
	})
}
